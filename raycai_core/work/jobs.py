"""Job requests as a user types them (CLI flags, the TUI's form), checked field by field, and
a one-line summary of a cluster's jobs. The request and answer shapes themselves are Ray's:
`raycai_core.ray.models` (JobRequest, JobInfo).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from raycai_core.ray.models import JobInfo

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
