"""When a poller runs next, and what the status line says about it.

A poller runs once, then schedules its next run from the outcome: the normal interval after a
success, an exponentially longer wait after each failure in a row (capped), so a workspace
in trouble is not hammered and the user sees since when the data is stale, and why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    interval: float
    maximum: float = 30.0
    failures: int = 0
    updated_at: float | None = None  # last success
    failing_since: float | None = None  # first failure of the current run of failures
    reason: str | None = None
    next_in: float | None = None

    def succeeded(self, now: float) -> float:
        """Record a success; returns the delay before the next run."""
        self.failures = 0
        self.updated_at = now
        self.failing_since = None
        self.reason = None
        self.next_in = self.interval
        return self.interval

    def failed(self, reason: str, now: float) -> float:
        """Record a failure; returns the (growing) delay before the next run."""
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        self.reason = reason
        self.next_in = min(self.maximum, max(self.interval, 0.5) * 2**self.failures)
        return self.next_in

    @property
    def stale(self) -> bool:
        return self.failures > 0
