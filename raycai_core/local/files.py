"""Project files over the API: upload (never overwrites), list, download, rename, delete.

Paths are relative to the project root (/home/cdsw on CML); any path that resolves outside
the project directory is refused.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from raycai_core.local.errors import ApiError, bad_request, not_found

UPLOAD_MODE = 0o644


def resolve(root: Path, relative: str) -> Path:
    base = root.resolve()
    cleaned = relative.strip().lstrip("/")
    if cleaned in ("", "."):
        return base
    target = (base / cleaned).resolve()
    if target != base and base not in target.parents:
        raise bad_request(f"path {relative!r} is outside the project directory")
    return target


def _free_name(target: Path) -> Path:
    """`name.ext`, else `name(1).ext`, `name(2).ext`...: an upload never overwrites."""
    candidate, n = target, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = target.with_name(f"{target.stem}({n}){target.suffix}")
    return candidate


def _info(root: Path, path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path.relative_to(root).as_posix(), "is_dir": path.is_dir()}
    if not info["is_dir"]:
        info["file_size"] = str(path.stat().st_size)
    return info


def _write_new(root: Path, name: str, data: bytes) -> None:
    target = resolve(root, name)
    if target == root.resolve():
        raise bad_request("the destination must be a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    stored = _free_name(target)
    with open(stored, "xb") as handle:
        handle.write(data)
    # As on CML, whatever this process's umask: an upload cannot choose a file's mode.
    stored.chmod(UPLOAD_MODE)


async def upload(request: web.Request, root: Path) -> None:
    """Each multipart field is one file; the field's name is its destination path."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise bad_request("expected a multipart/form-data body") from None
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise bad_request("every form field must be named with its destination path")
        data = await part.read(decode=False)
        await asyncio.to_thread(_write_new, root, part.name, bytes(data))


def _list(root: Path, relative: str) -> list[dict[str, Any]]:
    base = root.resolve()
    target = resolve(root, relative)
    if not target.exists():
        raise not_found(f"path {relative!r}")
    if not target.is_dir():
        return [_info(base, target)]
    return [_info(base, child) for child in sorted(target.iterdir())]


async def list_dir(root: Path, relative: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_list, root, relative)


def _read(root: Path, relative: str) -> bytes:
    target = resolve(root, relative)
    if not target.exists():
        raise not_found(f"path {relative!r}")
    if target.is_dir():
        raise bad_request(f"path {relative!r} is a directory")
    return target.read_bytes()


async def read(root: Path, relative: str) -> bytes:
    return await asyncio.to_thread(_read, root, relative)


def _delete(root: Path, relative: str) -> None:
    target = resolve(root, relative)
    if target == root.resolve():
        raise bad_request("refusing to delete the project root")
    if not target.exists() and not target.is_symlink():
        raise not_found(f"path {relative!r}")
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink()


def _rename(root: Path, relative: str, new_relative: str) -> dict[str, Any]:
    source, target = resolve(root, relative), resolve(root, new_relative)
    base = root.resolve()
    if base in (source, target):
        raise bad_request("cannot rename the project root")
    if not source.exists():
        raise not_found(f"path {relative!r}")
    if target.exists():
        raise ApiError(409, f"path {new_relative!r} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    return _info(base, target)


async def rename(root: Path, relative: str, new_relative: str) -> dict[str, Any]:
    return await asyncio.to_thread(_rename, root, relative, new_relative)


async def delete(root: Path, relative: str) -> None:
    await asyncio.to_thread(_delete, root, relative)
