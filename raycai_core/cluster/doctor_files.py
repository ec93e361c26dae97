"""Where the doctor (and `up`'s remote Ray check) reads and writes the project's files: on
this disk, or through the API v2 files endpoints when they are not here (remote mode).

Only what the doctor needs: the probe application's script and its answer, the project
venv's names (Ray's dist-info, pyvenv.cfg) and removing what the probe wrote. Remote writes
are `ProjectFiles.replace` (delete, upload, verify: never a `name(1)` copy).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from raycai_core.atomic import atomic_write_bytes
from raycai_core.cluster.preflight import UNKNOWN, Check, RayFound, judge_ray, pyvenv_version
from raycai_core.cml.errors import CMLError
from raycai_core.cml.files import ProjectFiles
from raycai_core.spec import ClusterSpec


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool


class DoctorFiles(Protocol):
    """The project's files by path relative to its root."""

    local: bool  # on this disk (processes may be run, modes read)

    async def list(self, relative: str) -> list[Entry]: ...  # [] when absent

    async def read(self, relative: str) -> bytes | None: ...

    async def write(self, relative: str, data: bytes) -> None: ...

    async def remove(self, relative: str) -> None: ...  # a file or a whole directory


class LocalFiles:
    local = True

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = Path(project_dir)

    def _list(self, relative: str) -> list[Entry]:
        directory = self.project_dir / relative
        if not directory.is_dir():
            return []
        return [Entry(p.name, p.is_dir()) for p in sorted(directory.iterdir())]

    async def list(self, relative: str) -> list[Entry]:
        return await asyncio.to_thread(self._list, relative)

    def _read(self, relative: str) -> bytes | None:
        try:
            return (self.project_dir / relative).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def read(self, relative: str) -> bytes | None:
        return await asyncio.to_thread(self._read, relative)

    async def write(self, relative: str, data: bytes) -> None:
        await asyncio.to_thread(atomic_write_bytes, self.project_dir / relative, data)

    def _remove(self, relative: str) -> None:
        path = self.project_dir / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    async def remove(self, relative: str) -> None:
        await asyncio.to_thread(self._remove, relative)


class RemoteFiles:
    local = False

    def __init__(self, files: ProjectFiles) -> None:
        self.files = files

    async def list(self, relative: str) -> list[Entry]:
        return [Entry(e.name, e.is_dir) for e in await self.files.list(relative)]

    async def read(self, relative: str) -> bytes | None:
        return await self.files.read(relative)

    async def write(self, relative: str, data: bytes) -> None:
        await self.files.replace(relative, data)

    async def remove(self, relative: str) -> None:
        await self.files.delete(relative)


async def missing_dirs(files: DoctorFiles, relative: str) -> list[str]:
    """The directories of `relative` (itself included) that do not exist yet, deepest
    first: what a write there creates, and what a cleanup should remove again."""
    path = PurePosixPath(relative)
    missing: list[str] = []
    for directory in [path, *path.parents][:-1]:  # never the project root
        parent, name = str(directory.parent), directory.name
        if any(e.name == name and e.is_dir for e in await files.list(parent)):
            break
        missing.append(str(directory))
    return missing


# -- the project venv's Ray, by its files ----------------------------------------------------


@dataclass(frozen=True)
class VenvFiles:
    """What a venv's files say (no process run): None when not found."""

    has_ray: bool
    has_python: bool
    ray_version: str | None
    python_version: str | None


async def read_venv(files: DoctorFiles, venv: str) -> VenvFiles:
    """`<venv>/bin/ray`, `<venv>/bin/python`, Ray's dist-info under lib/python*/site-packages
    and pyvenv.cfg's version, by listing and reading (4 to 5 calls remotely)."""
    bin_names, lib, cfg = await asyncio.gather(
        files.list(f"{venv}/bin"), files.list(f"{venv}/lib"), files.read(f"{venv}/pyvenv.cfg")
    )
    names = {e.name for e in bin_names}
    ray_version = None
    for python_dir in sorted(e.name for e in lib if e.is_dir and e.name.startswith("python")):
        for entry in await files.list(f"{venv}/lib/{python_dir}/site-packages"):
            match = re.match(r"ray-(.+)\.dist-info$", entry.name)
            if match:
                ray_version = match.group(1)
                break
        if ray_version:
            break
    return VenvFiles("ray" in names, "python" in names, ray_version, pyvenv_version(cfg))


async def find_ray_files(files: DoctorFiles, entry: str) -> RayFound | str:
    """Ray for one `ray.search` entry by the project's files alone (remote mode): a venv's
    names and dist-info; the runtime's PATH cannot be looked at from outside the project."""
    if entry == "PATH":
        return f"{UNKNOWN}: the runtime's PATH cannot be read from outside the project"
    try:
        venv = await read_venv(files, entry)
    except CMLError as exc:  # e.g. a venv that is a link out of the project
        return f"{UNKNOWN}: its files could not be read through the API ({exc})"
    if not venv.has_ray:
        return f"no {entry}/bin/ray"
    if not venv.has_python:
        return f"no {entry}/bin/python"
    return RayFound(
        entry, f"{entry}/bin/ray", f"{entry}/bin/python", venv.ray_version, venv.python_version
    )


async def check_ray_files(
    files: DoctorFiles, spec: ClusterSpec, kernels: Mapping[str, str] | None = None
) -> Check:
    """`check_ray` through the files API (remote `up` and `doctor`)."""
    found = await asyncio.gather(*(find_ray_files(files, e) for e in spec.ray.search))
    return judge_ray(spec, dict(zip(spec.ray.search, found, strict=True)), kernels or {})
