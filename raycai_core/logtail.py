"""Read the end of a (possibly huge) log file and follow what is appended to it.

The tail is read backwards in blocks from the end, so its cost depends on the lines asked
for, not on the file's size. Following reads only new bytes and keeps a partial last line
until its newline arrives. A follower may be told to skip ahead when more bytes wait than it
is willing to read (a flood): it then jumps to the last `max_backlog` bytes, starts at a line
boundary, and reports how many lines it jumped over.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024
MAX_LINE_BYTES = 64 * 1024  # a longer line (no newline yet) is cut and handed out in pieces
COUNT_LIMIT = 64 * 2**20  # skipped regions larger than this get an estimated line count


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _split(data: bytes) -> list[str]:
    """Newline-free complete lines of `data` (which ends at a newline, without it)."""
    text = _decode(data)
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.removesuffix("\r") for line in lines]
    return lines


@dataclass(frozen=True)
class Tail:
    """The last complete lines of a file and where following it should start."""

    lines: list[str]
    end: int  # offset just past the last newline read (a partial last line starts here)
    inode: int


def read_tail(path: str | os.PathLike[str], count: int, *, max_bytes: int = 8 * 2**20) -> Tail:
    """The last `count` complete lines (at most `max_bytes` read, from the end backwards).

    A last line without its newline is left out; `end` points at it, so a `FileFollower`
    started at `end` hands it out once it is complete. Raises FileNotFoundError.
    """
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        size = stat.st_size
        position = size
        chunks: list[bytes] = []
        newlines = 0
        while position > 0 and newlines <= count and size - position < max_bytes:
            step = min(BLOCK, position, max_bytes - (size - position))
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    last = data.rfind(b"\n")
    if count <= 0 or last < 0:
        # No complete line in what was read: follow from the start of what was read.
        return Tail([], position if last < 0 else position + last + 1, stat.st_ino)
    end = position + last + 1
    lines = _split(data[:last])
    if position > 0:
        lines = lines[1:]  # the first piece may be the end of a longer line
    return Tail(lines[-count:], end, stat.st_ino)


def tail_lines(
    path: str | os.PathLike[str], count: int, *, max_bytes: int = 8 * 2**20
) -> list[str]:
    """The last `count` lines of the file, a final line without its newline included."""
    if count <= 0:
        return []
    tail = read_tail(path, count, max_bytes=max_bytes)
    with open(path, "rb") as handle:
        handle.seek(tail.end)
        rest = handle.read(max_bytes)
    return (tail.lines + (_split(rest.removesuffix(b"\n")) if rest else []))[-count:]


@dataclass(frozen=True)
class FollowBatch:
    """What one `FileFollower.read_batch()` found."""

    lines: list[str]
    skipped: int = 0  # lines jumped over because the backlog exceeded max_backlog
    skipped_estimated: bool = False  # `skipped` is extrapolated (the region was huge)
    reset: str | None = None  # "truncated" or "replaced": reading restarted at offset 0
    missing: bool = False  # the file does not exist (now)
    behind: bool = False  # more bytes wait than this read took


class FileFollower:
    """Incremental reader: `read_new()` returns the complete lines appended since last call.

    Copes with truncation and replacement (the offset resets) and bounds each read. With
    `max_backlog` set, `read_batch()` skips ahead when more bytes wait than that.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        from_end: bool = True,
        max_read: int = 4 * 2**20,
        offset: int | None = None,
        inode: int | None = None,
        max_backlog: int | None = None,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.max_read = max_read
        self.max_backlog = max_backlog
        self.max_line = max_line
        self._partial = b""
        self._inode: int | None = inode
        self.offset = 0
        if offset is not None:
            self.offset = offset
        elif from_end:
            try:
                stat = self.path.stat()
                self.offset, self._inode = stat.st_size, stat.st_ino
            except FileNotFoundError:
                pass

    def read_new(self) -> list[str]:
        return self.read_batch().lines

    def read_batch(self) -> FollowBatch:
        try:
            with open(self.path, "rb") as handle:
                return self._read(handle)
        except FileNotFoundError:
            return FollowBatch([], missing=True)

    def _read(self, handle: BinaryIO) -> FollowBatch:
        stat = os.fstat(handle.fileno())
        reset = None
        if self._inode is not None and stat.st_ino != self._inode:
            reset = "replaced"
        elif stat.st_size < self.offset:
            reset = "truncated"
        if reset:
            self.offset, self._partial = 0, b""
        self._inode = stat.st_ino
        size = stat.st_size
        skipped, estimated = 0, False
        if self.max_backlog is not None and size - self.offset > self.max_backlog:
            skipped, estimated = self._skip_to(handle, size - self.max_backlog)
        if size == self.offset:
            return FollowBatch([], skipped, estimated, reset)
        handle.seek(self.offset)
        data = handle.read(min(self.max_read, size - self.offset))
        self.offset += len(data)
        lines = self._lines(data)
        return FollowBatch(lines, skipped, estimated, reset, behind=size > self.offset)

    def _lines(self, data: bytes) -> list[str]:
        data = self._partial + data
        last = data.rfind(b"\n")
        if last < 0:
            self._partial = data
            lines: list[str] = []
        else:
            self._partial = data[last + 1 :]
            lines = _split(data[:last])
        while len(self._partial) > self.max_line:
            # A line that never ends (a progress bar, binary junk) must not grow forever.
            cut, self._partial = self._partial[: self.max_line], self._partial[self.max_line :]
            lines.append(_decode(cut))
        return lines

    def _skip_to(self, handle: BinaryIO, start: int) -> tuple[int, bool]:
        """Jump to the first line that begins at or after `start`; count the lines jumped.

        The kept partial line, if any, ends at the first newline jumped over, so it is
        counted there. Without a newline near `start` the jump lands mid-line.
        """
        handle.seek(start - 1)
        newline = handle.read(self.max_line + 1).find(b"\n")
        target = start + newline if newline >= 0 else start
        skipped, estimated = _count_newlines(handle, self.offset, target)
        self.offset, self._partial = target, b""
        return skipped, estimated

    @property
    def behind(self) -> bool:
        """More bytes are waiting than the last read took."""
        try:
            return self.path.stat().st_size > self.offset
        except FileNotFoundError:
            return False


def _count_newlines(handle: BinaryIO, start: int, end: int) -> tuple[int, bool]:
    """Newlines in [start, end): exact up to COUNT_LIMIT bytes, extrapolated beyond."""
    handle.seek(start)
    counted = newlines = 0
    limit = min(end - start, COUNT_LIMIT)
    while counted < limit:
        chunk = handle.read(min(2**20, limit - counted))
        if not chunk:
            break
        counted += len(chunk)
        newlines += chunk.count(b"\n")
    if counted >= end - start or counted == 0:
        return newlines, False
    return round(newlines * (end - start) / counted), True


def follow_file(
    path: str | os.PathLike[str], poll_s: float = 0.25, *, after: Tail | None = None
) -> Iterator[str]:
    """Yield lines appended to the file, forever (stop with KeyboardInterrupt).

    `after`: a `read_tail` result, to go on exactly where it stopped (nothing lost between).
    """
    if after is None:
        follower = FileFollower(path)
    else:
        follower = FileFollower(path, offset=after.end, inode=after.inode)
    while True:
        lines = follower.read_new()
        yield from lines
        if not lines:
            time.sleep(poll_s)
