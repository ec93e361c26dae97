"""Read the end of a (possibly huge) log file and follow what is appended to it.

The tail is read backwards in blocks from the end, so its cost depends on the lines asked
for, not on the file's size. Following reads only new bytes and keeps a partial last line
until its newline arrives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK = 64 * 1024


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def tail_lines(
    path: str | os.PathLike[str], count: int, *, max_bytes: int = 8 * 2**20
) -> list[str]:
    """The last `count` complete or final lines of the file (at most `max_bytes` read)."""
    if count <= 0:
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        position = end
        chunks: list[bytes] = []
        newlines = 0
        while position > 0 and newlines <= count and end - position < max_bytes:
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            chunk = handle.read(size)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if position > 0 and lines:
        lines = lines[1:]  # the first piece may be the end of a longer line
    return [_decode(line) for line in lines[-count:]]


class FileFollower:
    """Incremental reader: `read_new()` returns the complete lines appended since last call.

    Copes with truncation and replacement (the offset resets) and bounds each read.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, from_end: bool = True, max_read: int = 4 * 2**20
    ) -> None:
        self.path = Path(path)
        self.max_read = max_read
        self._partial = b""
        self._inode: int | None = None
        self.offset = 0
        if from_end:
            try:
                stat = self.path.stat()
                self.offset, self._inode = stat.st_size, stat.st_ino
            except FileNotFoundError:
                pass

    def read_new(self) -> list[str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if (self._inode is not None and stat.st_ino != self._inode) or stat.st_size < self.offset:
            self.offset, self._partial = 0, b""
        self._inode = stat.st_ino
        if stat.st_size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.max_read)
        self.offset += len(data)
        data = self._partial + data
        parts = data.split(b"\n")
        self._partial = parts.pop()
        return [_decode(part) for part in parts]

    @property
    def behind(self) -> bool:
        """More bytes are waiting than the last read took."""
        try:
            return self.path.stat().st_size > self.offset
        except FileNotFoundError:
            return False


def follow_file(path: str | os.PathLike[str], poll_s: float = 0.25) -> Iterator[str]:
    """Yield lines appended to the file, forever (stop with KeyboardInterrupt)."""
    follower = FileFollower(path)
    while True:
        lines = follower.read_new()
        yield from lines
        if not lines:
            time.sleep(poll_s)
