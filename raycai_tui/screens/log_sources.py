"""Where the logs screen's lines come from, and how they reach it.

A source runs in a worker and puts lines into a `LineInbox`; the inbox tells its owner only
when it goes from empty to non-empty, so a flood costs one notification per batch the screen
takes, not one per line. The inbox holds at most `capacity` lines: when the screen cannot keep
up, the oldest waiting lines are dropped and stand for a "… N lines skipped …" marker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raycai_core.logtail import FileFollower, read_tail
from raycai_core.merged_logs import MergedLogs, NodeLine, describe, with_prefix
from raycai_tui.widgets.log_view import (
    NODE_COLORS,
    Marker,
    clean_line,
    clean_lines,
    prefixed,
    skip_marker,
)

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient

DEFAULT_RAY_FILE = "raylet.out"


def _weight(line: str) -> int:
    """How many source lines a buffered line stands for."""
    return line.skipped if isinstance(line, Marker) else 1


class LineInbox:
    """Lines read by a source worker and not yet shown (thread-safe, bounded)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        self._items: deque[str] = deque()
        self._dropped = 0

    def put(self, lines: Iterable[str]) -> bool:
        """Add lines; True when the inbox was empty before (its owner must be told)."""
        lines = list(lines)
        if not lines:
            return False
        with self._lock:
            was_empty = not self._items and not self._dropped
            items = self._items
            if len(lines) >= self.capacity:
                self._dropped += sum(map(_weight, items))
                self._dropped += sum(map(_weight, lines[: -self.capacity]))
                items.clear()
                items.extend(lines[-self.capacity :])
            else:
                items.extend(lines)
                for _ in range(len(items) - self.capacity):
                    self._dropped += _weight(items.popleft())
        return was_empty

    def take(self) -> list[str]:
        """Everything waiting, behind a skip marker when lines were dropped."""
        with self._lock:
            lines = list(self._items)
            self._items.clear()
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines.insert(0, skip_marker(dropped))
        return lines


@dataclass(frozen=True)
class Source:
    kind: Literal["launcher", "ray", "all"]
    # kind "ray": the Ray log file; kind "all": the Ray log whose copies are merged in
    filename: str | None = None
    note: str = ""  # e.g. "(node gone since T)"
    copy: bool = False  # the project's copy of a Ray log, not Ray's own file

    @property
    def label(self) -> str:
        if self.kind == "all":
            merged = f" + each node's {self.filename}" if self.filename else ""
            return f"all nodes' launcher logs{merged}"
        if self.kind == "launcher":
            return "launcher log"
        copy = " (project copy)" if self.copy else ""
        note = f" {self.note}" if self.note else ""
        return f"Ray {self.filename}{copy}{note}"

    @property
    def slug(self) -> str:
        """For file names."""
        if self.kind == "all":
            return f"all-nodes-{self.filename}" if self.filename else "all-nodes"
        return "launcher" if self.kind == "launcher" else str(self.filename)


LAUNCHER = Source("launcher")
ALL_NODES = Source("all")


def default_ray_file(listing: Mapping[str, list[str]]) -> str | None:
    """raylet.out when the node has it, else its first raylet file, else its first file."""
    files = [name for names in listing.values() for name in names]
    if DEFAULT_RAY_FILE in files:
        return DEFAULT_RAY_FILE
    raylet = listing.get("raylet") or []
    return (raylet or files or [None])[0]


@dataclass(frozen=True)
class FollowSettings:
    tail: int = 1000  # lines shown at once when a source opens
    poll_interval: float = 0.05  # seconds between reads of a followed file
    max_backlog: int = 4 * 2**20  # bytes waiting beyond this are skipped, not read
    ray_interval: float = 0.5  # how often Ray's agent looks for new bytes
    rescan_interval: float = 1.0  # how often the logs directory is listed for new nodes


def follow_file(
    path: Path,
    inbox: LineInbox,
    notify: Callable[[], None],
    cancelled: threading.Event,
    settings: FollowSettings,
) -> None:
    """Put the tail of `path`, then what is appended to it, into `inbox` until cancelled.

    Runs in a thread. Truncation, replacement and a missing file show as marker lines.
    """

    def put(lines: list[str]) -> None:
        if inbox.put(lines):
            notify()

    max_backlog = settings.max_backlog
    missing = False
    try:
        tail = read_tail(path, settings.tail)
    except FileNotFoundError:
        put([Marker(f"… {path} does not exist (yet); waiting for it …")])
        follower = FileFollower(path, from_end=False, max_backlog=max_backlog)
        missing = True
    else:
        put(clean_lines(tail.lines))
        follower = FileFollower(
            path, offset=tail.end, inode=tail.inode, max_backlog=max_backlog, max_read=max_backlog
        )
    delay = settings.poll_interval
    while not cancelled.wait(delay):
        batch = follower.read_batch()
        lines: list[str] = []
        if batch.missing and not missing:
            lines.append(Marker(f"… {path.name} is gone; waiting for it to come back …"))
        missing = batch.missing
        if batch.reset:
            lines.append(Marker(f"… {path.name} was {batch.reset}; following it from its start …"))
        if batch.skipped:
            lines.append(skip_marker(batch.skipped, estimated=batch.skipped_estimated))
        lines.extend(clean_lines(batch.lines))
        put(lines)
        delay = 0.0 if batch.behind else settings.poll_interval


def follow_all_nodes(
    logs_dir: Path,
    inbox: LineInbox,
    notify: Callable[[], None],
    cancelled: threading.Event,
    settings: FollowSettings,
    ray_file: str | None = None,
) -> None:
    """Put the merged tail of every node's launcher log, then their new lines, into `inbox`.

    Runs in a thread. Each line starts with its node's name, in one color per node (in node
    order: head first). Files that appear later (workers added) join at the next rescan.
    With `ray_file`, each node's copy of that Ray log in the project is merged in
    (`<node>/<file>`), gone nodes' too.
    """

    def put(lines: list[str]) -> None:
        if inbox.put(lines):
            notify()

    merged = MergedLogs(
        logs_dir,
        max_read=settings.max_backlog,
        max_backlog=settings.max_backlog,
        rescan_s=settings.rescan_interval,
        ray_file=ray_file,
    )
    colors: dict[str, int] = {}

    def with_nodes(lines: list[NodeLine]) -> list[str]:
        for node in merged.nodes:
            colors.setdefault(node, len(colors) % NODE_COLORS)
        width = merged.width
        return [
            prefixed(clean_line(with_prefix(line, width)), len(line.node), colors[line.node])
            for line in lines
        ]

    tail = merged.tail(settings.tail)
    if not merged.nodes:
        put([Marker(f"… no launcher logs in {logs_dir} yet; waiting for them …")])
    put(with_nodes(tail))
    delay = settings.poll_interval
    while not cancelled.wait(delay):
        batch = merged.read_batch()
        lines: list[str] = [
            Marker(f"… {describe(note)} …", skipped=note.skipped) for note in batch.notes
        ]
        lines.extend(with_nodes(batch.lines))
        put(lines)
        delay = 0.0 if batch.behind else settings.poll_interval


async def follow_ray_log(
    client: RayClient,
    node_id: str,
    filename: str,
    inbox: LineInbox,
    notify: Callable[[], None],
    settings: FollowSettings,
) -> None:
    """Put the tail of a node's Ray log file, then its new lines, into `inbox`.

    Runs on the app's event loop (the client is async); raises the RayDashboardError family.
    """
    stream = client.stream_log(
        node_id, filename, lines=settings.tail, interval=settings.ray_interval
    )
    async with aclosing(stream) as lines:
        async for line in lines:
            if inbox.put((clean_line(line),)):
                notify()
