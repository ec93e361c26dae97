"""Reading the copies of the nodes' Ray logs that the launchers keep in the project.

Each launcher appends its node's Ray logs to `logs/<node>/ray/<session>/<file>` every few
seconds (raycai_core/launcher/ray_logs.py), so they can be read after the node is gone: by
`raycai logs NAME NODE --ray FILE`, the logs screen's Ray source and the merged view. A
node started again (a restart in place, a new application) writes a newer session; readers
take the newest session that has the file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

RAY_DIR = "ray"
SESSION_PREFIX = "session_"


@dataclass(frozen=True)
class RayLogCopy:
    node: str
    session: str
    name: str
    path: Path

    @property
    def relative(self) -> str:
        """`<node>/ray/<session>/<file>`, relative to the logs directory."""
        return f"{self.node}/{RAY_DIR}/{self.session}/{self.name}"


def sessions(logs_dir: Path, node: str) -> list[str]:
    """The node's copied sessions, oldest first (Ray's session names sort by start time)."""
    try:
        names = os.listdir(Path(logs_dir) / node / RAY_DIR)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(SESSION_PREFIX))


def files(logs_dir: Path, node: str) -> dict[str, RayLogCopy]:
    """Every copied file of the node by name, each from the newest session that has it."""
    found: dict[str, RayLogCopy] = {}
    for session in sessions(logs_dir, node):
        folder = Path(logs_dir) / node / RAY_DIR / session
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            found[name] = RayLogCopy(node, session, name, folder / name)
    return dict(sorted(found.items()))


def find(logs_dir: Path, node: str, name: str) -> RayLogCopy | None:
    return files(logs_dir, node).get(name)


def nodes(logs_dir: Path) -> list[str]:
    """The nodes that have copies of Ray logs."""
    try:
        entries = list(os.scandir(logs_dir))
    except OSError:
        return []
    return sorted(e.name for e in entries if e.is_dir() and sessions(Path(logs_dir), e.name))


def last_written(copy: RayLogCopy) -> float | None:
    """When the newest file of the copy's session was last written (unix s)."""
    folder = copy.path.parent
    try:
        times = [entry.stat().st_mtime for entry in os.scandir(folder)]
    except OSError:
        return None
    return max(times, default=None)


def gone_note(since: float | None) -> str:
    """`(node gone since 2026-12-07 03:12:45 UTC)`, or `(node gone)` when nothing says when."""
    if since is None:
        return "(node gone)"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since))
    return f"(node gone since {stamp} UTC)"


def unanswered_note(error: object, limit: int = 100) -> str:
    """`(Ray did not give it: <why, cut>)`: the copy is shown because Ray failed (a node Ray
    still lists while its agent is gone, a head that does not answer)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"(Ray did not give it: {text})"
