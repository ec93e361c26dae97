"""Jobs as raycai shows them: every submission recorded in the cluster's ledger once Ray
accepted it, every read of Ray's job list recorded (when something changed) and merged with
the ledger by THE rule (job_merge). The CLI (`raycai job`) and the TUI's jobs view both use
these, so a job a restarted head forgot never vanishes from either.

The ledger is written off the event loop (the project may be a network mount); a ledger
that cannot be written never fails a submission or a listing: the caller is told why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raycai_core.ray.errors import JobNotFound
from raycai_core.ray.models import JobInfo, JobRequest
from raycai_core.work.access import ClusterAccess
from raycai_core.work.job_merge import merge_jobs
from raycai_core.work.ledger import LedgerError, read_ledger, record_seen, record_submission

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient


@dataclass(frozen=True)
class Submitted:
    job_id: str
    unrecorded: str | None = None  # why the ledger could not record it


@dataclass(frozen=True)
class JobList:
    jobs: list[JobInfo]  # merged, newest first
    unrecorded: str | None = None  # why the ledger could not be updated


async def submit(client: RayClient, access: ClusterAccess, request: JobRequest) -> Submitted:
    """Submit, then record the job (its entrypoint, never its environment)."""
    job_id = await client.submit_job(request)
    try:
        await asyncio.to_thread(
            record_submission, access.paths, job_id, request.entrypoint, access.head.incarnation
        )
    except LedgerError as exc:
        return Submitted(job_id, str(exc))
    return Submitted(job_id)


def _record(access: ClusterAccess, ray_jobs: list[JobInfo]) -> str | None:
    """Runs in a thread: what Ray said of the recorded jobs; why it could not be written."""
    try:
        record_seen(access.paths, ray_jobs)
    except LedgerError as exc:
        return str(exc)
    return None


def _merge(access: ClusterAccess, ray_jobs: list[JobInfo]) -> JobList:
    """Runs in a thread: record what Ray said, then merge with the ledger."""
    problem = _record(access, ray_jobs)
    head = access.head
    merged = merge_jobs(ray_jobs, read_ledger(access.paths), head.incarnation, head.started_at)
    return JobList(merged, problem)


async def seen(access: ClusterAccess, ray_jobs: list[JobInfo]) -> str | None:
    """Record what Ray said of these jobs (when it changes the ledger); why not, if not."""
    return await asyncio.to_thread(_record, access, ray_jobs)


async def list_jobs(client: RayClient, access: ClusterAccess) -> JobList:
    """Ray's job list (one request) merged with the ledger."""
    return await asyncio.to_thread(_merge, access, await client.list_jobs())


async def job(client: RayClient, access: ClusterAccess, job_id: str) -> JobInfo:
    """One job: Ray's answer (recorded), else the ledger's row of it (LOST, or as last seen);
    JobNotFound when neither knows it."""
    try:
        info = await client.job(job_id)
    except JobNotFound:
        rows = (await asyncio.to_thread(_merge, access, [])).jobs
        recorded = next((row for row in rows if row.id == job_id), None)
        if recorded is None:
            raise
        return recorded
    await seen(access, [info])
    return info
