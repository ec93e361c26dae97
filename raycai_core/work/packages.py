"""A local directory as a Ray `working_dir` package, the way `ray job submit --working-dir`
sends one: a zip of the directory's files at its root, named by a hash of their paths and
contents (`gcs://_ray_pkg_<hash>.zip`), checked for (`GET /api/packages/gcs/<name>`) and
uploaded once (`PUT`).

Left out, at any depth: Ray's default excludes (`.git`, `.venv`, `venv`, `__pycache__`) and
the launcher folders (`.raycai` and the one in use, e.g. `raycai-clusters`: cluster
directories hold Ray tokens). `.gitignore` files are not read.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from raycai_core.cluster.layout import search_folders

EXCLUDED_NAMES = frozenset({".git", ".venv", "venv", "__pycache__", ".raycai"})
MAX_PACKAGE_BYTES = 512 * 2**20 - 2**20  # Ray's gRPC message limit, with room to spare
PACKAGE_PREFIX = "_ray_pkg_"


class PackageError(ValueError):
    """The directory cannot be packaged; the message says why."""


@dataclass(frozen=True)
class Package:
    name: str  # _ray_pkg_<hash>.zip
    data: bytes
    files: int

    @property
    def uri(self) -> str:
        return f"gcs://{self.name}"


def package_files(root: Path) -> list[Path]:
    """The files to package, relative to `root`, sorted (symlinks to files are followed)."""
    found: list[Path] = []
    excluded = EXCLUDED_NAMES | set(search_folders())
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in excluded)
        for name in sorted(files):
            path = Path(directory, name)
            if name not in excluded and path.is_file():
                found.append(path.relative_to(root))
    return found


def build_package(directory: str | os.PathLike[str]) -> Package:
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise PackageError(f"--working-dir {directory}: not a directory")
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    files = package_files(root)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            path = root / relative
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise PackageError(f"cannot read {path}: {exc.strerror or exc}") from None
            name = relative.as_posix()
            digest.update(name.encode() + b"\0" + len(content).to_bytes(8, "big") + content)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
            if buffer.tell() > MAX_PACKAGE_BYTES:
                raise PackageError(
                    f"--working-dir {directory} is larger than Ray accepts "
                    f"({MAX_PACKAGE_BYTES // 2**20} MiB zipped): leave data out of it"
                )
    data = buffer.getvalue()
    return Package(f"{PACKAGE_PREFIX}{digest.hexdigest()[:32]}.zip", data, len(files))
