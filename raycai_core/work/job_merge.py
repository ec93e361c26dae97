"""THE rule that merges Ray's job list with raycai's ledger (jobs.json), for `raycai job
list|status` and the TUI's jobs view alike. PURE.

- A job Ray lists shows Ray's status and message (a job whose driver died with the head shows
  Ray's own, when the head kept its state).
- A recorded job Ray does not list:
  - last seen finished: its last status, the message saying it is raycai's record;
  - last seen not finished, submitted under another head incarnation than the current one:
    LOST, "lost when the head restarted at <the head's start> (last seen <status> at ...)";
  - otherwise (the current head, Ray not listing it yet, or an incarnation unknown): as last
    seen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from raycai_core.ray.models import LOST, JobInfo
from raycai_core.work.ledger import LedgerEntry

RECORD_NOTE = "from raycai's record (Ray no longer lists this job)"


def clock(when: float) -> str:
    """HH:MM:SS, local time."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def lost_message(entry: LedgerEntry, head_started_at: float) -> str:
    restart = f" at {clock(head_started_at)}" if head_started_at else ""
    return (
        f"lost when the head restarted{restart} "
        f"(last seen {entry.status} at {clock(entry.last_seen_at)})"
    )


def recorded_job(entry: LedgerEntry, head_incarnation: str, head_started_at: float) -> JobInfo:
    """The row of a recorded job that Ray does not list."""
    restarted = bool(entry.head_incarnation and head_incarnation) and (
        entry.head_incarnation != head_incarnation
    )
    if entry.terminal:
        status = entry.status
        message = f"{RECORD_NOTE}: {entry.message}" if entry.message else RECORD_NOTE
    elif restarted:
        status, message = LOST, lost_message(entry, head_started_at)
    else:
        status, message = entry.status, entry.message
    return JobInfo(
        id=entry.id,
        type="SUBMISSION",
        status=status,
        entrypoint=entry.entrypoint,
        message=message,
        submission_id=entry.id,
        start_time=entry.start_time or entry.submitted_at,
        end_time=entry.end_time or (entry.last_seen_at if status == LOST else None),
    )


def merge_jobs(
    ray_jobs: Sequence[JobInfo],
    ledger: Sequence[LedgerEntry],
    head_incarnation: str,
    head_started_at: float,
) -> list[JobInfo]:
    """Ray's jobs and the recorded ones it does not list, newest first (Ray's order)."""
    known = {job.submission_id or job.id for job in ray_jobs}
    merged = list(ray_jobs)
    for entry in reversed(ledger):  # the newest record of an id wins
        if entry.id not in known:
            known.add(entry.id)
            merged.append(recorded_job(entry, head_incarnation, head_started_at))
    return sorted(merged, key=lambda j: (j.start_time or math.inf, j.id), reverse=True)
