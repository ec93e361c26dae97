"""The healing policy: what to restart, what to recreate, what to leave alone, and when.

One policy for the TUI (after each poll), `raycai heal NAME` (once) and `raycai heal NAME
--watch`. `heal_reason` decides from a ClusterSummary alone (the cluster list's data, no
extra API call) whether a cluster needs healing now; `plan_heal` decides, from a full
ClusterView, the actions ClusterManager.heal takes; `HealPlanner` spaces attempts out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from raycai_core.cluster import phases
from raycai_core.cluster.autoscaler import KEPT_BY_AUTOSCALER, autoscaler_running
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.records import NodeRecord
from raycai_core.cluster.view import ClusterView
from raycai_core.cml.models import AppStatus
from raycai_core.naming import DEFAULT_GROUP, HEAD_NODE, group_node, node_group

if TYPE_CHECKING:
    from raycai_core.cluster.types import ClusterSummary

# A worker missing for less than this after the desired state changed is left to the `up`
# or `scale` that is creating it.
MISSING_GRACE_S = 60.0
BROKEN = (AppStatus.FAILED, AppStatus.STOPPED)

HealKind = Literal["restart", "recreate", "resume"]


@dataclass(frozen=True)
class HealStep:
    node: str
    kind: HealKind
    reason: str


@dataclass(frozen=True)
class HealPlan:
    steps: list[HealStep]
    left_alone: list[tuple[str, str]]  # (node, why not touched)


def _active(desired: Desired | None) -> bool:
    return desired is not None and desired.state == "active"


def launcher_gone(app_status: AppStatus, record: NodeRecord | None, now: float) -> str | None:
    """Why a running application's launcher counts as gone (its record stopped heartbeating)."""
    if app_status is not AppStatus.RUNNING or record is None:
        return None
    if record.phase in (phases.STOPPED, phases.FAILED):
        return None  # it said goodbye; the platform's status tells the rest
    return phases.launcher_gone_reason(record, now)


def _leaving(record: NodeRecord | None) -> bool:
    return record is not None and record.phase in (phases.DRAINING, phases.DRAINED)


def _parked(app_status: AppStatus, record: NodeRecord | None) -> bool:
    """Drained and waiting to be deleted, on a running application (not a record left by a
    launcher killed while it drained on its way out)."""
    return app_status is AppStatus.RUNNING and record is not None and record.phase == phases.DRAINED


def heal_reason(
    summary: ClusterSummary, now: float, missing_grace_s: float = MISSING_GRACE_S
) -> str | None:
    """Why this cluster needs healing now (automatic healing), or None."""
    desired = summary.desired
    if desired is None or not _active(desired) or not desired.spec.healing:
        return None
    if autoscaler_running(summary.records.get(HEAD_NODE), now):
        return None  # one reconciler: the cluster's own autoscaler keeps it
    broken = [m.node for m in summary.members if m.app.status in BROKEN]
    if broken:
        return "application failed or stopped: " + ", ".join(broken)
    records: Mapping[str, NodeRecord] = summary.records
    silent = [
        m.node for m in summary.members if launcher_gone(m.app.status, records.get(m.node), now)
    ]
    if silent:
        return "launcher gone (no heartbeat): " + ", ".join(silent)
    groups = desired.spec.groups
    drained = [
        m.node
        for m in summary.workers
        if _parked(m.app.status, records.get(m.node))
        and m.group in groups
        and _group_size(summary.workers, m.group) <= groups[m.group].count
    ]
    if drained:
        return "drained by an unfinished scale-down: " + ", ".join(drained)
    head = summary.head
    missing = sum(
        max(0, group.count - _group_size(summary.workers, name)) for name, group in groups.items()
    )
    settled = now - (desired.updated_at or desired.created_at) >= missing_grace_s
    if missing > 0 and settled and head is not None and head.app.status is AppStatus.RUNNING:
        return f"{missing} worker application(s) missing"
    return None


def _group_size(workers: Iterable[Any], group: str | None) -> int:
    """How many of `workers` (anything with a `node`) belong to `group`."""
    return sum(1 for w in workers if node_group(w.node) == group)


def plan_heal(view: ClusterView, desired: Desired | None, now: float) -> HealPlan:
    """The actions that bring `view` back to `desired` without touching what works.

    Restart: an application FAILED or STOPPED, or RUNNING with a launcher gone silent.
    Recreate: a worker application missing (each group's lowest free indexes). Resume: a
    worker drained by a scale-down that never deleted it, while its group still wants that
    many workers. Each group is kept at its own count.
    Left alone: everything else, and every node of a cluster that is not active.
    """
    if not _active(desired):
        return HealPlan([], [])
    assert desired is not None
    head = view.head_row
    if head is not None and autoscaler_running(head.record, now):
        kept = f"kept by {KEPT_BY_AUTOSCALER}"
        return HealPlan([], [(row.node, kept) for row in view.rows if row.app is not None])
    steps: list[HealStep] = []
    alone: list[tuple[str, str]] = []
    groups = desired.spec.groups
    workers = view.worker_rows
    for row in view.rows:
        if row.app is None:
            continue
        status = row.app_status
        record = row.record
        wanted = groups[row.group].count if row.group in groups else 0
        if status in BROKEN:
            reason = f"application {status.value}"
            if record and record.error:
                reason += f": {record.error}"
            steps.append(HealStep(row.node, "restart", reason))
        elif (gone := launcher_gone(status, record, now)) is not None:
            steps.append(HealStep(row.node, "restart", gone))
        elif (
            _parked(status, record)
            and row.role == "worker"
            and row.group in groups
            and _group_size(workers, row.group) <= wanted
        ):
            why = "drained by a scale-down that did not finish; the cluster still wants it"
            steps.append(HealStep(row.node, "resume", why))
        elif _leaving(record):
            assert record is not None
            alone.append((row.node, f"{record.phase}: a scale-down removes it"))
    existing = {row.node for row in workers}
    for name, group in groups.items():
        for node in missing_workers(existing, group.count, name):
            steps.append(HealStep(node, "recreate", "application missing"))
    return HealPlan(steps, alone)


def missing_workers(
    existing: Collection[str], wanted: int, group: str = DEFAULT_GROUP
) -> list[str]:
    """Nodes of `group` to create so that `wanted` of it exist, lowest free indexes first
    (`existing` may hold any node; only the group's count)."""
    have = {node for node in existing if node_group(node) == group}
    missing: list[str] = []
    index = 1
    while len(have) + len(missing) < wanted:
        node = group_node(group, index)
        if node not in have:
            missing.append(node)
        index += 1
    return missing


@dataclass
class HealPlanner:
    """Heal decisions across polls: a cluster healed recently waits (longer each time)."""

    first_wait: float = 10.0
    max_wait: float = 300.0
    reset_after: float = 120.0  # healthy this long: the next heal waits first_wait again
    missing_grace_s: float = MISSING_GRACE_S
    _not_before: dict[str, float] = field(default_factory=dict)
    _wait: dict[str, float] = field(default_factory=dict)
    _healthy_since: dict[str, float] = field(default_factory=dict)

    def due(self, summaries: list[ClusterSummary], busy: Collection[str], now: float) -> list[str]:
        names = []
        for summary in summaries:
            if summary.name in busy:
                continue
            if heal_reason(summary, now, self.missing_grace_s) is None:
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
