"""Copies of a node's Ray logs in the cluster directory, so that they outlive the node.

Ray writes its logs into the node's own temp directory (`<temp>/session_*/logs/`), which goes
with the pod. Each launcher loads this file (copied beside it as `raycai_ray_logs.py`, Ray's
Python, standard library only, never imports raycai) and appends what each kept log file
grew by to `logs/<node>/ray/<session>/<file>` every few seconds, once more when it stops,
and over every session before the launcher prunes old ones. A file's copy is its bytes
from the start: the copy's size is where the next pass reads on (so a launcher started
again goes on where the last one stopped, with no state of its own). Ray moves a dead
worker's files to `logs/old/`; copies are flat, by file name, and the move changes nothing.

The copies of every node of a cluster share one cap (`cap_bytes`): over it, the sessions
written to longest ago are dropped first (any node's), never the one this node is writing.
The total is measured again whenever this node has written a share of the cap since the
last measure, so the cap holds to within that share per node.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import threading
import time
from collections.abc import Callable

PROGRAM = "raycai_ray_logs.py"  # the copy's name in the cluster directory
CAP_BYTES = 200 * 2**20  # every node's copies together
INTERVAL_S = 3.0
MAX_READ = 4 * 2**20  # per file per pass: a flood is caught up over a few passes
SCAN_SHARE = 50  # measure the total again after writing cap / SCAN_SHARE bytes
SESSION_PREFIX = "session_2"
RAY_DIR = "ray"  # logs/<node>/ray/<session>/
# raylet and GCS (head), the dashboard agent, workers' stdout/stderr, job drivers (head).
# Ray names a second start in the same session's directory raylet.1.out (a worker's Ray
# restarted in place joins the head's session again).
KEPT = (
    "raylet.out",
    "raylet.err",
    "raylet.[0-9]*.out",
    "raylet.[0-9]*.err",
    "gcs_server.out",
    "gcs_server.err",
    "gcs_server.[0-9]*.out",
    "gcs_server.[0-9]*.err",
    "dashboard_agent.log",
    "dashboard_agent.[0-9]*.log",
    "worker-*.out",
    "worker-*.err",
    "job-driver-*.log",
)
SOURCE_DIRS = ("", "old")  # within a session's logs/: Ray moves a dead worker's files to old/


_KEPT_RE = re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in KEPT))


def kept(name: str) -> bool:
    return _KEPT_RE.match(name) is not None


def sessions(temp_dir: str) -> list[str]:
    """The Ray session directories' names in `temp_dir`, oldest first."""
    try:
        names = os.listdir(temp_dir)
    except OSError:
        return []
    return sorted(
        n
        for n in names
        if n.startswith(SESSION_PREFIX) and os.path.isdir(os.path.join(temp_dir, n))
    )


def current_session(temp_dir: str) -> str | None:
    """The session Ray writes now (`session_latest`), or None."""
    target = os.path.realpath(os.path.join(temp_dir, "session_latest"))
    name = os.path.basename(target)
    if name.startswith(SESSION_PREFIX) and os.path.isdir(target):
        return name
    return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


class SessionCopy:
    """Where each file of one session stands: (inode, bytes copied) by file name."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}


class RayLogMirror:
    """Copies `temp_dir`'s Ray logs to `<logs_dir>/<node>/ray/`; thread-safe."""

    def __init__(
        self,
        temp_dir: str,
        logs_dir: str,
        node: str,
        *,
        cap_bytes: int = CAP_BYTES,
        max_read: int = MAX_READ,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.temp_dir = temp_dir
        self.logs_dir = logs_dir
        self.node = node
        self.dest = os.path.join(logs_dir, node, RAY_DIR)
        self.cap_bytes = int(cap_bytes)
        self.max_read = int(max_read)
        self.note = note or (lambda message: None)
        self.copied = 0  # bytes, since this mirror was made
        self.full: set[str] = set()  # sessions of this node over the cap alone: not copied on
        self._copies: dict[str, SessionCopy] = {}
        self._lock = threading.Lock()
        self._since_measure: int | None = None  # None: never measured
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ------------------------------------------------------------------------

    def sync_current(self) -> int:
        """Copy what the current session's files grew by; bytes copied."""
        session = current_session(self.temp_dir)
        return self.sync([session] if session else [])

    def sync_all(self) -> int:
        """Copy every session's new bytes (before old sessions are pruned, and at the end)."""
        return self.sync(sessions(self.temp_dir))

    def sync(self, names: list[str]) -> int:
        with self._lock:
            copied = 0
            for name in names:
                if name not in self.full:
                    copied += self._sync_session(name)
            self.copied += copied
            if copied and names:
                self._keep_cap(copied, writing=names[-1])
            return copied

    def _sync_session(self, session: str) -> int:
        logs = os.path.join(self.temp_dir, session, "logs")
        found: dict[str, str] = {}
        for sub in SOURCE_DIRS:
            directory = os.path.join(logs, sub) if sub else logs
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if kept(name) and name not in found:
                    found[name] = os.path.join(directory, name)
        state = self._copies.setdefault(session, SessionCopy())
        copied = 0
        for name in sorted(found):
            copied += self._sync_file(found[name], os.path.join(self.dest, session, name), state)
        return copied

    def _sync_file(self, source: str, target: str, state: SessionCopy) -> int:
        name = os.path.basename(source)
        known = state.files.get(name)
        if known is not None:  # most files, most passes: nothing new, one stat
            try:
                info = os.stat(source)
            except OSError:
                return 0
            if info.st_ino == known[0] and info.st_size == known[1]:
                return 0
        try:
            handle = open(source, "rb")  # noqa: SIM115
        except OSError:
            return 0
        with handle:
            info = os.fstat(handle.fileno())
            if info.st_size == 0:
                state.files[name] = (info.st_ino, 0)  # Ray makes many that stay empty
                return 0
            if known is None:  # first sight in this run: the copy's size says how far it got
                offset = max(0, _size(target))
                if offset > info.st_size:
                    offset = 0  # not this file's copy (replaced): copy it again after it
            elif known[0] != info.st_ino or known[1] > info.st_size:
                offset = 0  # replaced or truncated: follow it from its start
            else:
                offset = known[1]
            if offset >= info.st_size:
                state.files[name] = (info.st_ino, offset)
                return 0
            handle.seek(offset)
            data = handle.read(min(self.max_read, info.st_size - offset))
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "ab") as out:
                out.write(data)
        except OSError as exc:
            self.note(f"Ray log copy: cannot write {target}: {exc}")
            return 0
        state.files[name] = (info.st_ino, offset + len(data))
        return len(data)

    # -- the cap -------------------------------------------------------------------------

    def _keep_cap(self, copied: int, writing: str) -> None:
        if self._since_measure is not None:
            self._since_measure += copied
            if self._since_measure < self.cap_bytes // SCAN_SHARE:
                return
        self._since_measure = 0
        self.enforce_cap(keep=os.path.join(self.dest, writing))

    def enforce_cap(self, keep: str | None = None) -> list[str]:
        """Drop the sessions (any node's) written to longest ago until every copy together
        fits the cap; never `keep`. The dropped sessions' directories."""
        found = session_sizes(self.logs_dir)
        total = sum(size for _, size, _ in found)
        dropped: list[str] = []
        for path, size, _ in sorted(found, key=lambda entry: entry[2]):
            if total <= self.cap_bytes:
                break
            if keep is not None and os.path.abspath(path) == os.path.abspath(keep):
                continue
            shutil.rmtree(path, ignore_errors=True)
            total -= size
            dropped.append(path)
        if dropped:
            self.note(
                f"Ray log copies over {self.cap_bytes / 2**20:.0f} MB: dropped "
                + ", ".join(os.path.relpath(p, self.logs_dir) for p in dropped)
            )
        if total > self.cap_bytes and keep is not None:
            session = os.path.basename(keep)
            if session not in self.full:
                self.full.add(session)
                self.note(
                    f"Ray log copies: {session} alone is over the cap "
                    f"({self.cap_bytes / 2**20:.0f} MB); it is not copied further"
                )
        return dropped

    # -- the thread ----------------------------------------------------------------------

    def start(self, interval: float = INTERVAL_S) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="ray-log-copies", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync_current()
            except Exception as exc:  # never let a copy take the launcher down
                self.note(f"Ray log copy failed: {exc!r}")

    def stop(self) -> None:
        """Stop the thread, then the last pass over every session."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        try:
            self.sync_all()
        except Exception as exc:
            self.note(f"Ray log copy failed: {exc!r}")


def session_sizes(logs_dir: str) -> list[tuple[str, int, float]]:
    """Every node's session copies: (directory, bytes, last written), in no order."""
    found: list[tuple[str, int, float]] = []
    try:
        nodes = os.listdir(logs_dir)
    except OSError:
        return found
    for node in nodes:
        root = os.path.join(logs_dir, node, RAY_DIR)
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            path = os.path.join(root, name)
            size, newest = 0, 0.0
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                try:
                    info = entry.stat()
                except OSError:
                    continue
                size += info.st_size
                newest = max(newest, info.st_mtime)
            found.append((path, size, newest or time.time()))
    return found
