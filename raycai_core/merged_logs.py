"""Every node's launcher log of a cluster, interleaved by time.

Each `logs/<node>.log` is read with `logtail` (its tail backwards from the end, then only what
is appended), so the cost depends on the lines asked for, never on a file's size. The tails
and each round of new lines are merged by their leading timestamp (the launcher writes
`2025-01-01T10:00:00.123Z [source] message`, UTC); a line without one keeps its place right
after the previous line of its file. Ties go to the node that sorts first (head, worker-1,
worker-2, ..., worker-10). Files that appear later (a worker added) are picked up at the next
rescan. Within one round the merge is exact; a line that is read in a later round than a
newer line of another node (another node's clock, a slow network mount) is shown when read.

With `ray_file` (e.g. raylet.out), each node's copy of that Ray log in the project
(raycai_core.ray_log_copies: `logs/<node>/ray/<session>/`, the newest session) is merged
too, as the source `<node>/<file>`, whether the node is still there or gone. Ray stamps its
lines `[2026-12-07 03:12:45,123 ...` in the node's local time (UTC on CML's pods).
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Literal, NamedTuple

from raycai_core import ray_log_copies
from raycai_core.logtail import FileFollower, read_tail

LOG_SUFFIX = ".log"
SEPARATOR = " | "
CONTEXT_LINES = 50  # read before a file's tail to time the untimed lines at its top
MIN_SHARE = 64 * 1024  # the least a file may read per round, however many files there are
_STAMP = re.compile(r"\[?(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,](\d+))?")
_DIGITS = re.compile(r"(\d+)")


class NodeLine(NamedTuple):
    """One line of one node's log; `time` is its sort key ("" when nothing gives one)."""

    time: str
    node: str
    text: str


NoteKind = Literal["appeared", "gone", "truncated", "replaced", "skipped", "unreadable"]


class NodeNote(NamedTuple):
    """Something that happened to a node's file rather than a line of it."""

    node: str
    kind: NoteKind
    skipped: int = 0  # for "skipped": lines jumped over (see FileFollower's max_backlog)
    estimated: bool = False
    detail: str = ""  # for "unreadable": why


@dataclass
class MergedBatch:
    """What one `MergedLogs.read_batch()` found: notes first, then the lines in time order."""

    lines: list[NodeLine] = field(default_factory=list)
    notes: list[NodeNote] = field(default_factory=list)
    behind: bool = False  # some file has more bytes waiting than this round read


def time_key(line: str) -> str | None:
    """A sortable `YYYY-MM-DDTHH:MM:SS.mmm` from the line's leading timestamp, or None."""
    # The launcher's own stamp is already in this form.
    if (
        len(line) > 23
        and line[23] == "Z"
        and line[19] == "."
        and line[10] == "T"
        and line[:4].isdigit()
    ):
        return line[:23]
    found = _STAMP.match(line)
    if found is None:
        return None
    date, clock, fraction = found.groups()
    return f"{date}T{clock}.{(fraction or '')[:3]:0<3}"


def node_sort_key(node: str) -> tuple[bool, list[int | str]]:
    """head first, then by name with numbers compared as numbers (worker-2 < worker-10)."""
    return node != "head", [int(p) if p.isdigit() else p for p in _DIGITS.split(node)]


def node_logs(logs_dir: Path) -> dict[str, Path]:
    """The launcher logs in `logs_dir` by node, in node order (none when it does not exist)."""
    try:
        entries = [entry for entry in os.scandir(logs_dir) if entry.name.endswith(LOG_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {entry.name.removesuffix(LOG_SUFFIX): Path(entry.path) for entry in entries}
    return {node: found[node] for node in sorted(found, key=node_sort_key) if node}


def ray_copy_logs(logs_dir: Path, ray_file: str) -> dict[str, Path]:
    """Each node's copy of the Ray log `ray_file`, as sources named `<node>/<file>`."""
    found = {}
    for node in ray_log_copies.nodes(logs_dir):
        copy = ray_log_copies.find(logs_dir, node, ray_file)
        if copy is not None:
            found[f"{node}/{ray_file}"] = copy.path
    return found


def with_prefix(line: NodeLine, width: int) -> str:
    """`node | text`, the node padded to `width`."""
    return f"{line.node:<{width}}{SEPARATOR}{line.text}"


def describe(note: NodeNote) -> str:
    """One line saying what a note means, for people."""
    name = note.node if "/" in note.node else f"{note.node}{LOG_SUFFIX}"
    if note.kind == "skipped":
        about = "about " if note.estimated else ""
        return f"{about}{note.skipped:,} lines of {note.node} skipped (it wrote faster than read)"
    return {
        "appeared": f"{name} appeared; following it",
        "gone": f"{name} is gone; waiting for it to come back",
        "truncated": f"{name} was truncated; following it from its start",
        "replaced": f"{name} was replaced; following it from its start",
        "unreadable": f"{name} cannot be read: {note.detail}",
    }[note.kind]


class _NodeLog:
    """One node's file, where its follower stands, and the time of its last line read."""

    def __init__(self, node: str, follower: FileFollower) -> None:
        self.node = node
        self.follower = follower
        self.last_time = ""
        self.missing = False

    def timed(self, texts: list[str]) -> list[NodeLine]:
        """`texts` with sort keys; lines without a time take the previous line's time."""
        keys: list[str] = []
        last = self.last_time
        for text in texts:
            key = time_key(text)
            if key is not None:
                last = key
            keys.append(last)
        if not self.last_time and keys and keys[0] == "":
            # Lines before the first timed line ever read: keep them just before it.
            first = next((key for key in keys if key), "")
            keys = [key or first for key in keys]
        self.last_time = last
        node = self.node
        return [NodeLine(key, node, text) for key, text in zip(keys, texts, strict=True)]


def _merge(groups: Iterable[list[NodeLine]]) -> Iterable[NodeLine]:
    """Groups in node order, each in file order: merged by time, ties to the earlier group."""
    return heapq.merge(*groups, key=itemgetter(0))


class MergedLogs:
    """Tails and follows every `<node>.log` of a logs directory, merged by time.

    Call `tail()` once, then `read_batch()` as often as wanted. Memory: each file's tail of
    at most `count` lines while merging, then `count` lines; each round, at most `max_read`
    bytes of all files together (with `max_backlog`, also a total: older waiting bytes are
    skipped and noted). Each file gets an equal share, at least MIN_SHARE.
    """

    def __init__(
        self,
        logs_dir: str | os.PathLike[str],
        *,
        max_read: int = 4 * 2**20,
        max_backlog: int | None = None,
        rescan_s: float = 1.0,
        ray_file: str | None = None,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.ray_file = ray_file
        self.max_read = max_read
        self.max_backlog = max_backlog
        self.rescan_s = rescan_s
        self._count = 0
        self._logs: dict[str, _NodeLog] = {}
        self._unreadable: set[str] = set()
        self._scanned = float("-inf")

    @property
    def nodes(self) -> list[str]:
        """The nodes followed so far, in node order."""
        return list(self._logs)

    @property
    def width(self) -> int:
        """The longest node name so far (prefixes are padded to it)."""
        return max(map(len, self._logs), default=0)

    def tail(self, count: int) -> list[NodeLine]:
        """The last `count` lines of all the files together, in time order.

        Following (`read_batch`) goes on where each file's tail stopped; files that appear
        later start with their own last `count` lines.
        """
        self._count = max(0, count)
        groups = self._scan([])
        return list(deque(_merge(groups), maxlen=self._count))

    def read_batch(self) -> MergedBatch:
        """Lines appended to any file since the last call (and files that appeared), merged."""
        batch = MergedBatch()
        groups: dict[str, list[NodeLine]] = {}
        if time.monotonic() - self._scanned >= self.rescan_s:
            for lines in self._scan(batch.notes, announce=True):
                groups[lines[0].node] = lines
        for node, log in self._logs.items():
            read = log.follower.read_batch()
            if read.missing and not log.missing:
                batch.notes.append(NodeNote(node, "gone"))
            log.missing = read.missing
            if read.reset:
                kind: NoteKind = "truncated" if read.reset == "truncated" else "replaced"
                batch.notes.append(NodeNote(node, kind))
            if read.skipped:
                batch.notes.append(NodeNote(node, "skipped", read.skipped, read.skipped_estimated))
            batch.behind = batch.behind or read.behind
            if read.lines:
                groups[node] = groups.get(node, []) + log.timed(read.lines)
        ordered = [groups[node] for node in self._logs if node in groups]
        batch.lines = list(_merge(ordered))
        return batch

    def _scan(self, notes: list[NodeNote], *, announce: bool = False) -> list[list[NodeLine]]:
        """Start following the files not followed yet; their tails, in node order."""
        self._scanned = time.monotonic()
        groups: list[list[NodeLine]] = []
        added = False
        sources = node_logs(self.logs_dir)
        if self.ray_file:
            sources.update(ray_copy_logs(self.logs_dir, self.ray_file))
        for node, path in sources.items():
            if node in self._logs:
                continue
            try:
                # A few lines more than shown, so that untimed lines at the top of the tail
                # get the time of the timed line before them.
                tail = read_tail(path, self._count + CONTEXT_LINES if self._count else 0)
            except FileNotFoundError:
                continue  # gone between the listing and the open: seen at the next rescan
            except OSError as exc:
                if node not in self._unreadable:
                    self._unreadable.add(node)
                    notes.append(NodeNote(node, "unreadable", detail=exc.strerror or str(exc)))
                continue
            log = _NodeLog(
                node,
                FileFollower(
                    path,
                    offset=tail.end,
                    inode=tail.inode,
                    max_read=self.max_read,
                    max_backlog=self.max_backlog,
                ),
            )
            self._logs[node] = log
            self._unreadable.discard(node)
            added = True
            if announce:
                notes.append(NodeNote(node, "appeared"))
            lines = log.timed(tail.lines)[-self._count :] if self._count else []
            if lines:
                groups.append(lines)
        if added:
            self._logs = {node: self._logs[node] for node in sorted(self._logs, key=node_sort_key)}
            groups.sort(key=lambda lines: node_sort_key(lines[0].node))
            self._share_budgets()
        return groups

    def _share_budgets(self) -> None:
        files = len(self._logs)
        read = max(MIN_SHARE, self.max_read // files)
        backlog = None if self.max_backlog is None else max(MIN_SHARE, self.max_backlog // files)
        for log in self._logs.values():
            log.follower.max_read, log.follower.max_backlog = read, backlog
