"""Which clusters to heal after a poll, and healing them through ClusterManager.heal.

Decided from the poll's snapshot alone (no extra API call): a cluster is healed when its
desired state is active, its spec allows healing, no operation of this app is running on it,
and an application failed or stopped, or a worker is missing for longer than a grace period
(so that an `up` or `scale` running elsewhere can finish creating it first).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raycai_tui.messages import Event

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ClusterSummary
    from raycai_tui.services import Services, Snapshot

MISSING_GRACE_S = 60.0
BROKEN = ("failed", "stopped")


def heal_reason(summary: ClusterSummary, now: float) -> str | None:
    """Why this cluster needs healing now, or None."""
    desired = summary.desired
    if desired is None or desired.state != "active" or not desired.spec.healing:
        return None
    broken = [m.node for m in summary.members if m.app.status.value in BROKEN]
    if broken:
        return "application failed or stopped: " + ", ".join(broken)
    head = summary.head
    missing = desired.spec.workers.count - len(summary.workers)
    settled = now - (desired.updated_at or desired.created_at) > MISSING_GRACE_S
    if missing > 0 and settled and head is not None and head.app.status.value == "running":
        return f"{missing} worker application(s) missing"
    return None


@dataclass
class HealPlanner:
    """Heal decisions across polls: a cluster healed recently waits (longer each time)."""

    first_wait: float = 10.0
    max_wait: float = 300.0
    reset_after: float = 120.0  # healthy this long: the next heal waits first_wait again
    _not_before: dict[str, float] = field(default_factory=dict)
    _wait: dict[str, float] = field(default_factory=dict)
    _healthy_since: dict[str, float] = field(default_factory=dict)

    def due(self, summaries: list[ClusterSummary], busy: Collection[str], now: float) -> list[str]:
        names = []
        for summary in summaries:
            if summary.name in busy:
                continue
            if heal_reason(summary, now) is None:
                since = self._healthy_since.setdefault(summary.name, now)
                if now - since >= self.reset_after:
                    self._wait.pop(summary.name, None)
                continue
            self._healthy_since.pop(summary.name, None)
            if now >= self._not_before.get(summary.name, 0.0):
                names.append(summary.name)
        return names

    def attempted(self, name: str, now: float) -> None:
        wait = self._wait.get(name, self.first_wait / 2) * 2
        self._wait[name] = min(wait, self.max_wait)
        self._not_before[name] = now + self._wait[name]


async def heal_clusters(services: Services, snapshot: Snapshot, names: list[str]) -> list[Event]:
    """Heal each named cluster; returns what was done (or why it could not be), as events."""
    events: list[Event] = []
    for name in names:
        manager = services.manager()
        try:
            view = await services.observer.observe(
                name, members=snapshot.members.get(name, []), with_ray=False
            )
            actions = await manager.heal(name, view)
        except Exception as exc:  # one cluster's failure must not stop healing the others
            events.append(Event(time.time(), name, f"healing failed: {exc}", "error"))
            continue
        events.extend(
            Event(time.time(), name, f"healed {a.node}: {a.action} ({a.reason})", "warning")
            for a in actions
        )
    return events
