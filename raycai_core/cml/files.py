"""A project's files through the API v2 (from outside CML, where they are not on disk).

CML's upload never overwrites: a second upload of `a.py` lands as `a(1).py` and still
answers 200. So a file is replaced by delete, upload, then list (and read) to verify, and an
upload is never retried blindly: a try whose answer was lost may have landed, and its retry
would leave a `(1)` copy. `replace` lists first after any failed upload, and deletes the
`name(k)` copies that an earlier command's lost answers left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLError, CMLNotFound

REPLACE_TRIES = 8


class FileReplaceFailed(CMLError):
    """A file could not be replaced and verified within REPLACE_TRIES rounds."""


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative to the project root
    is_dir: bool
    size: int | None

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def copy_names(name: str, names: set[str] | dict[str, object]) -> list[str]:
    """The `stem(k).suffix` copies of `name` among `names` (an upload that found it there)."""
    path = PurePosixPath(name)
    pattern = re.compile(re.escape(path.stem) + r"\(\d+\)" + re.escape(path.suffix) + "$")
    return sorted(n for n in names if pattern.fullmatch(n))


class ProjectFiles:
    """List, read, delete and replace the files of the client's project."""

    def __init__(self, cml: CMLClient) -> None:
        self.cml = cml

    def _path(self, relative: str, suffix: str = "") -> str:
        cleaned = str(PurePosixPath(relative)).lstrip("/")
        return f"/projects/{self.cml.project_id}/files/{quote(cleaned, safe='')}{suffix}"

    async def list(self, directory: str) -> list[FileInfo]:
        """The directory's entries (one page, as CML answers); [] when it does not exist."""
        try:
            body = json.loads(await self.cml.raw("GET", self._path(directory)) or b"{}")
        except CMLNotFound:
            return []
        entries = []
        for item in body.get("files") or []:
            size = item.get("file_size")
            entries.append(
                FileInfo(
                    path=str(item.get("path") or ""),
                    is_dir=bool(item.get("is_dir")),
                    size=int(size) if size not in (None, "") else None,
                )
            )
        return entries

    async def sizes(self, directory: str) -> dict[str, int | None]:
        """The directory's files by name, with their sizes."""
        return {e.name: e.size for e in await self.list(directory) if not e.is_dir}

    async def read(self, relative: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return await self.cml.raw("POST", self._path(relative, ":download"))
        except CMLNotFound:
            return None

    async def delete(self, relative: str) -> None:
        """Delete a file or directory; gone already counts as done."""
        with contextlib.suppress(CMLNotFound):
            await self.cml.raw("DELETE", self._path(relative))

    async def _upload_once(self, relative: str, data: bytes) -> None:
        path = f"/projects/{self.cml.project_id}/files"
        name = str(PurePosixPath(relative)).lstrip("/")
        await self.cml.raw(
            "POST", path, files={name: (PurePosixPath(name).name, data)}, retry=False
        )

    async def replace(self, relative: str, data: bytes) -> bool:
        """Make the file hold exactly `data`: delete, upload, list to verify; retried under
        API faults, never leaving a `name(k)` copy. False when it held `data` already."""
        path = PurePosixPath(relative)
        parent, name = str(path.parent), path.name
        uploaded = False
        last: Exception | None = None
        for attempt in range(1, REPLACE_TRIES + 1):
            sizes = await self.sizes(parent)
            for copy in copy_names(name, sizes):  # a lost answer's upload, then a retry's
                await self.delete(str(path.parent / copy))
            if sizes.get(name) == len(data) and await self.read(relative) == data:
                return uploaded
            if name in sizes:
                await self.delete(relative)
            try:
                uploaded = True
                await self._upload_once(relative, data)
            except CMLError as exc:
                if not exc.retryable:
                    raise
                last = exc  # it may have landed all the same: the next round lists first
                await asyncio.sleep(random.random() * min(2.0, 0.1 * 2**attempt))
        raise FileReplaceFailed(
            f"could not replace {relative} in {REPLACE_TRIES} rounds of delete, upload and "
            f"verify (last error: {last})",
            operation=f"replace {relative}",
        )
