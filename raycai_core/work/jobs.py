"""Ray Jobs as the dashboard reports them (Ray 2.60 JSON shapes), and job requests.

Parsing never fails on a missing or mistyped field: a job then shows what is known. Only an
answer that is not a JSON list of objects (or one object) is refused (`UnexpectedAnswer`).
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raycai_core.ray_dashboard import UnexpectedAnswer

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
GB = 2**30
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class JobInfo:
    """One job: a submitted one (SUBMISSION) or a driver that connected itself (DRIVER)."""

    id: str  # the submission id, else Ray's job id
    type: str
    status: str  # PENDING|RUNNING|STOPPED|SUCCEEDED|FAILED, or "UNKNOWN"
    entrypoint: str
    message: str
    error_type: str | None = None
    submission_id: str | None = None
    job_id: str | None = None
    start_time: float | None = None  # unix seconds
    end_time: float | None = None
    driver_exit_code: int | None = None
    driver_node_ip: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_submission(self) -> bool:
        return self.type == "SUBMISSION"

    def duration(self, now: float | None = None) -> float | None:
        if self.start_time is None:
            return None
        end = self.end_time or (time.time() if now is None else now)
        return max(0.0, end - self.start_time)


def _seconds(value: Any) -> float | None:
    """Ray's job times are Unix milliseconds; 0 or anything else means unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return value / 1000.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


def parse_job(item: Any) -> JobInfo:
    if not isinstance(item, Mapping):
        raise UnexpectedAnswer("a job is not a JSON object")
    submission_id = _optional_text(item.get("submission_id"))
    job_id = _optional_text(item.get("job_id"))
    driver = item.get("driver_info")
    exit_code = item.get("driver_exit_code")
    status = _text(item.get("status")).upper()
    return JobInfo(
        id=submission_id or job_id or "?",
        type=_text(item.get("type")) or ("SUBMISSION" if submission_id else "DRIVER"),
        status=status if status in STATUSES else "UNKNOWN",
        entrypoint=_text(item.get("entrypoint")),
        message=_text(item.get("message")),
        error_type=_optional_text(item.get("error_type")),
        submission_id=submission_id,
        job_id=job_id,
        start_time=_seconds(item.get("start_time")),
        end_time=_seconds(item.get("end_time")),
        driver_exit_code=exit_code if isinstance(exit_code, int) else None,
        driver_node_ip=(
            _optional_text(driver.get("node_ip_address")) if isinstance(driver, Mapping) else None
        ),
    )


def parse_jobs(payload: Any) -> list[JobInfo]:
    """`GET /api/jobs/` -> jobs, newest first (entries that are not objects are left out)."""
    if not isinstance(payload, list):
        raise UnexpectedAnswer("the job list is not a JSON array")
    jobs = [parse_job(item) for item in payload if isinstance(item, Mapping)]
    return sorted(jobs, key=lambda j: (j.start_time or math.inf, j.id), reverse=True)


@dataclass(frozen=True)
class JobsSummary:
    running: int = 0
    pending: int = 0
    failed: int = 0
    total: int = 0

    def line(self) -> str:
        """One line for a cluster's overview, e.g. `jobs: 1 running, 2 pending, 1 failed`."""
        if not self.total:
            return "jobs: none"
        return f"jobs: {self.running} running, {self.pending} pending, {self.failed} failed"


def summarise_jobs(jobs: Iterable[JobInfo]) -> JobsSummary:
    counts = {"RUNNING": 0, "PENDING": 0, "FAILED": 0}
    total = 0
    for job in jobs:
        total += 1
        if job.status in counts:
            counts[job.status] += 1
    return JobsSummary(counts["RUNNING"], counts["PENDING"], counts["FAILED"], total)


# -- requests -------------------------------------------------------------------------------


class JobRequestError(ValueError):
    """A job request field is not valid; the message names the field."""


@dataclass(frozen=True)
class JobRequest:
    entrypoint: str
    env: dict[str, str] = field(default_factory=dict)
    working_dir_uri: str | None = None  # gcs://_ray_pkg_<hash>.zip after an upload
    cpus: float | None = None
    gpus: float | None = None
    memory_gb: float | None = None
    submission_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The `POST /api/jobs/` body (JobSubmitRequest)."""
        body: dict[str, Any] = {"entrypoint": self.entrypoint}
        runtime_env: dict[str, Any] = {}
        if self.env:
            runtime_env["env_vars"] = dict(self.env)
        if self.working_dir_uri:
            runtime_env["working_dir"] = self.working_dir_uri
        if runtime_env:
            body["runtime_env"] = runtime_env
        if self.submission_id:
            body["submission_id"] = self.submission_id
        if self.cpus is not None:
            body["entrypoint_num_cpus"] = self.cpus
        if self.gpus is not None:
            body["entrypoint_num_gpus"] = self.gpus
        if self.memory_gb is not None:
            body["entrypoint_memory"] = int(self.memory_gb * GB)
        return body


def entrypoint_from_argv(argv: Sequence[str]) -> str:
    """One argument is a shell command line as it is; several are quoted and joined."""
    words = list(argv)
    if not words or not "".join(words).strip():
        raise JobRequestError("the entrypoint is empty: give the command after `--`")
    return words[0] if len(words) == 1 else shlex.join(words)


def check_entrypoint(text: str) -> str:
    text = text.strip()
    if not text:
        raise JobRequestError("entrypoint: give the command to run, e.g. python train.py")
    return text


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` items (a form's lines or repeated flags); blank items are skipped."""
    env: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise JobRequestError(f"env: {item.strip()!r} is not KEY=VALUE")
        if not _ENV_NAME_RE.match(key):
            raise JobRequestError(f"env: {key!r} is not a valid variable name")
        env[key] = value
    return env


def parse_amount(text: str | float | None, what: str) -> float | None:
    """A resource amount: empty means not asked for; else a finite number >= 0."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise JobRequestError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise JobRequestError(f"{what}: must be a number >= 0, not {text!r}")
    return value
