"""jobs.json: the ledger of the jobs raycai submitted to a cluster, so that none is lost
silently when the head restarts without its state (Ray then no longer lists them; the merge
rule, raycai_core.work.job_merge, shows them LOST).

`{"schema": 1, "jobs": [...]}`, oldest first; an entry: `id` (the submission id),
`entrypoint` as submitted (never the environment: its values may be secrets), `submitted_at`,
`head_incarnation` at submission, the last `status` and `message` raycai saw from Ray and
`last_seen_at`, plus Ray's `start_time`/`end_time` once seen. The newest MAX_ENTRIES stay.

Each change is a read-modify-write under a short flock of `.jobs.lock` (the CLI and the TUI
both write) and an atomic replace. A missing file reads as empty; an entry that is not one
is skipped when read but kept as it is when written; a file that is not a ledger at all is
moved aside to `jobs.json.corrupt` before a new one is started, never overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from raycai_core.atomic import atomic_write_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.ray.models import RAY_TERMINAL, JobInfo

SCHEMA = 1
MAX_ENTRIES = 500
LOCK_TIMEOUT_S = 5.0
LOCK_POLL_S = 0.02
# A job still running is rewritten at most this often when nothing else changed, so that
# "last seen RUNNING at" stays near the truth without a write per poll (the TUI polls ~2 s).
REFRESH_S = 60.0
MESSAGE_LIMIT = 2000  # Ray's message may carry a traceback; the file stays bounded


class LedgerError(Exception):
    """The ledger could not be written (busy lock, no cluster directory, I/O error)."""


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    entrypoint: str
    submitted_at: float
    head_incarnation: str
    status: str  # the last status seen from Ray (PENDING right after submission)
    message: str
    last_seen_at: float
    start_time: float | None = None  # Ray's, once seen
    end_time: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in RAY_TERMINAL

    @classmethod
    def from_json(cls, item: Any) -> LedgerEntry | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        try:
            submitted_at = float(item.get("submitted_at") or 0.0)
            return cls(
                id=item["id"],
                entrypoint=str(item.get("entrypoint") or ""),
                submitted_at=submitted_at,
                head_incarnation=str(item.get("head_incarnation") or ""),
                status=str(item.get("status") or "PENDING"),
                message=str(item.get("message") or ""),
                last_seen_at=float(item.get("last_seen_at") or submitted_at),
                start_time=_seconds(item.get("start_time")),
                end_time=_seconds(item.get("end_time")),
            )
        except (TypeError, ValueError):
            return None


def _seconds(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- reading -------------------------------------------------------------------------------


def _load(paths: ClusterPaths) -> tuple[list[Any], bool]:
    """(the raw entries, whether the file exists but is not a ledger); OSError when it
    cannot be read at all (never called corrupt: it stays where it is)."""
    try:
        text = paths.jobs_json.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return [], False
    except UnicodeDecodeError:
        return [], True
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [], True
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        return [], True
    return data["jobs"], False


def read_ledger(paths: ClusterPaths) -> list[LedgerEntry]:
    """The recorded jobs, oldest first; empty when the file is missing or unreadable."""
    try:
        raw, _ = _load(paths)
    except OSError:
        return []
    entries = (LedgerEntry.from_json(item) for item in raw)
    return [entry for entry in entries if entry is not None]


# -- writing -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(paths: ClusterPaths) -> Iterator[None]:
    """The ledger's lock; never creates the cluster directory (LedgerError without one)."""
    try:
        fd = os.open(paths.jobs_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LedgerError(f"cannot open {paths.jobs_lock}: {exc.strerror or exc}") from exc
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LedgerError(
                        f"{paths.jobs_json} is locked by another raycai for over "
                        f"{LOCK_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the flock


def _clip(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


def _update(paths: ClusterPaths, change: Callable[[list[Any]], bool]) -> None:
    """Read, `change(raw entries)` in place, write when it says so: under the lock,
    atomically."""
    with _locked(paths):
        try:
            raw, corrupt = _load(paths)
            raw = list(raw)
            if not change(raw):
                return
            if corrupt:  # keep what we cannot read for a human; start a new ledger
                os.replace(paths.jobs_json, paths.root / "jobs.json.corrupt")
            atomic_write_json(paths.jobs_json, {"schema": SCHEMA, "jobs": raw[-MAX_ENTRIES:]})
        except OSError as exc:
            raise LedgerError(f"cannot write {paths.jobs_json}: {exc.strerror or exc}") from exc


def record_submission(
    paths: ClusterPaths,
    job_id: str,
    entrypoint: str,
    head_incarnation: str,
    now: float | None = None,
) -> None:
    """A job Ray accepted (status PENDING until seen). Raises LedgerError."""
    when = time.time() if now is None else now
    entry = {
        "id": job_id,
        "entrypoint": entrypoint,
        "submitted_at": when,
        "head_incarnation": head_incarnation,
        "status": "PENDING",
        "message": "",
        "last_seen_at": when,
    }

    def add(raw: list[Any]) -> bool:
        raw[:] = [item for item in raw if not (isinstance(item, dict) and item.get("id") == job_id)]
        raw.append(entry)
        return True

    _update(paths, add)


def seen_changes(
    entries: Iterable[LedgerEntry], jobs: Iterable[JobInfo], now: float
) -> dict[str, JobInfo]:
    """PURE: the recorded jobs whose answer from Ray is worth a write: status, message or
    times changed, or still going and last written REFRESH_S ago or more."""
    by_id = {job.submission_id or job.id: job for job in jobs}
    changed: dict[str, JobInfo] = {}
    for entry in entries:
        job = by_id.get(entry.id)
        if job is None or job.status == "UNKNOWN":  # a partial answer says nothing new
            continue
        differs = (job.status, _clip(job.message), job.start_time, job.end_time) != (
            entry.status,
            entry.message,
            entry.start_time,
            entry.end_time,
        )
        stale = not job.terminal and now - entry.last_seen_at >= REFRESH_S
        if differs or stale:
            changed[entry.id] = job
    return changed


def record_seen(paths: ClusterPaths, jobs: Iterable[JobInfo], now: float | None = None) -> bool:
    """What Ray said of the recorded jobs; writes only when something changed (True then).
    Raises LedgerError."""
    when = time.time() if now is None else now
    jobs = list(jobs)
    if not seen_changes(read_ledger(paths), jobs, when):  # no lock, no write: the usual poll
        return False
    written = False

    def apply(raw: list[Any]) -> bool:
        nonlocal written
        current = {e.id: e for e in map(LedgerEntry.from_json, raw) if e is not None}
        changed = seen_changes(current.values(), jobs, when)
        for item in raw:
            job = changed.get(item.get("id")) if isinstance(item, dict) else None
            if job is not None:
                item.update(
                    status=job.status,
                    message=_clip(job.message),
                    last_seen_at=when,
                    start_time=job.start_time,
                    end_time=job.end_time,
                )
                written = True
        return written

    _update(paths, apply)
    return written
