"""What an autoscaled cluster's autoscaler is doing, for `raycai status` and the TUI.

On or off and why (the head record), who keeps the cluster; per worker group its min and
max (cluster.json), current workers (joined Ray) and target workers (its applications that
exist: what the autoscaler asked CML for); pending demand by resource shape (the dashboard's
cluster status), each with the groups whose nodes can hold it; and recent decisions, read
from logs/autoscaler.log: workers launched, drained and terminated, with the reason Ray or
the provider gave.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from raycai_core.cluster import autoscaler as keeping
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.view import ClusterView
from raycai_core.launcher.autoscaling import ray_resources
from raycai_core.logtail import read_tail
from raycai_core.naming import node_group
from raycai_core.ray.errors import RayDashboardError
from raycai_core.ray.models import ClusterUsage, ResourceDemand

LOG_FILE = "autoscaler.log"
DECISION_LINES = 2000  # of the log's tail searched for decisions
RECENT_DECISIONS = 10
NOT_STARTED = "not started"  # configured, but the head has not said anything yet

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z ")
_NODE = r"[a-z][a-z0-9]{0,11}-\d+"
_CREATED = re.compile(rf"raycai-provider: created ({_NODE}) \(app ([^,\s)]+)")
_DELETING = re.compile(rf"raycai-provider: deleting ({_NODE}) \(app ([^)\s]+)\): (.*)$")
_TERMINATING = re.compile(r"Terminating the node with id (\S+) and ip (\S+)\. \((.*)\)\s*$")
_DRAINING = re.compile(r"Draining (\d+) raylet\(s\)")


@dataclass(frozen=True)
class Decision:
    at: float | None  # unix seconds (UTC stamp of the log line)
    action: str  # launched | drained | terminated
    node: str
    reason: str | None = None


@dataclass(frozen=True)
class GroupStatus:
    """One worker group under the autoscaler: its bounds (min = max for a group that does
    not autoscale: the autoscaler keeps its count), workers joined and applications that
    exist, and the logical resources of each of its nodes."""

    name: str
    min: int
    max: int
    autoscale: bool
    current: int  # workers of the group that joined Ray
    target: int  # worker applications of the group that exist
    resources: dict[str, float] = field(default_factory=dict)

    def fits(self, shape: dict[str, float]) -> bool:
        """Can one node of this group hold a bundle of `shape`?"""
        return all(self.resources.get(name, 0.0) >= amount for name, amount in shape.items())


@dataclass(frozen=True)
class AutoscalerStatus:
    state: str  # off | starting | running | restarting | not started
    reason: str | None
    kept_by: str
    min: int
    max: int
    idle_timeout_s: float
    current: int  # workers that joined Ray
    target: int  # worker applications that exist (what the autoscaler asked CML for)
    restarts: int = 0
    pending: list[ResourceDemand] = field(default_factory=list)
    pending_error: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    groups: list[GroupStatus] = field(default_factory=list)

    @property
    def on(self) -> bool:
        return self.state in keeping.KEEPING_STATES

    def holders(self, demand: ResourceDemand) -> list[str]:
        """The groups (with room to grow: target below max) whose node can hold the
        demand's shape (each bundle of a placement group): where Ray can put it."""
        shapes = [bundle for bundle, _ in demand.bundles] or [demand.shape]
        return [
            group.name
            for group in self.groups
            if group.target < group.max and all(group.fits(shape) for shape in shapes)
        ]


def _stamp(line: str) -> float | None:
    match = _STAMP.match(line)
    if not match:
        return None
    moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = match.group(2) or "0"
    return moment.timestamp() + int(fraction) / 10 ** len(fraction)


def parse_decisions(lines: Iterable[str]) -> list[Decision]:
    """Launched, drained and terminated workers from the autoscaler's log, oldest first.

    Ray names a node by its application id and says why it goes ("Terminating the node with
    id ... (idle)"); the provider's lines name the worker and its application.
    """
    decisions: list[Decision] = []
    why: dict[str, str] = {}  # app id -> Ray's reason
    draining: list[str] = []  # app ids Ray is about to drain
    for line in lines:
        at = _stamp(line)
        if match := _TERMINATING.search(line):
            why[match.group(1)] = match.group(3)
            draining.append(match.group(1))
        elif _DRAINING.search(line):
            for app_id in draining:
                decisions.append(Decision(at, "drained", app_id, why.get(app_id)))
            draining = []
        elif match := _CREATED.search(line):
            decisions.append(Decision(at, "launched", match.group(1)))
        elif match := _DELETING.search(line):
            node, app_id, reason = match.groups()
            decisions = [
                Decision(d.at, d.action, node, d.reason) if d.node == app_id else d
                for d in decisions
            ]
            decisions.append(Decision(at, "terminated", node, why.get(app_id) or reason))
    return decisions


def read_decisions(paths: ClusterPaths, count: int = RECENT_DECISIONS) -> list[Decision]:
    try:
        tail = read_tail(paths.logs_dir / LOG_FILE, DECISION_LINES)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return parse_decisions(tail.lines)[-count:]


def build_status(
    view: ClusterView,
    decisions: list[Decision],
    usage: ClusterUsage | None = None,
    usage_error: str | None = None,
    now: float | None = None,
) -> AutoscalerStatus | None:
    """The autoscaler's status from a cluster view (None for a fixed-size cluster)."""
    desired = view.desired
    if desired is None or not keeping.autoscaling_on(desired.spec):
        return None
    now = time.time() if now is None else now
    head = view.head_row.record if view.head_row else None
    record = head.autoscaler if head else None
    state = record.state if record else NOT_STARTED
    reason = record.reason if record else "the head has not started it yet"
    alive = keeping.autoscaler_running(head, now)
    if record is not None and state in keeping.KEEPING_STATES and not alive:
        state, reason = keeping.OFF, "the head's launcher is not running"
    spec = desired.spec
    groups = [
        GroupStatus(
            name=name,
            min=group.min,
            max=group.max,
            autoscale=group.autoscale,
            current=sum(
                1 for row in view.worker_rows if node_group(row.node) == name and row.joined
            ),
            target=sum(1 for row in view.worker_rows if node_group(row.node) == name),
            resources=dict(ray_resources(group)),
        )
        for name, group in spec.groups.items()
    ]
    return AutoscalerStatus(
        state=state,
        reason=reason,
        kept_by=keeping.keeper(desired, head, now),
        min=sum(g.min for g in groups),
        max=sum(g.max for g in groups),
        idle_timeout_s=spec.autoscaling.idle_timeout_s,
        current=view.workers_joined,
        target=len(view.worker_rows),
        restarts=record.restarts if record else 0,
        pending=list(usage.demand) if usage else [],
        pending_error=usage_error,
        decisions=decisions,
        groups=groups,
    )


async def fetch_status(
    observer: Any, paths: ClusterPaths, view: ClusterView
) -> AutoscalerStatus | None:
    """build_status with the dashboard's pending demand and the log's decisions.
    `observer` is a raycai_core.cluster.observe.Observer."""
    if view.desired is None or not keeping.autoscaling_on(view.desired.spec):
        return None
    usage: ClusterUsage | None = None
    error: str | None = None
    if view.head is None:
        error = "the head has not published its address yet"
    else:
        try:
            client = await observer.dashboard(view.name, view.head)
            usage = await client.cluster_usage()
        except RayDashboardError as exc:
            error = str(exc)
    decisions = await asyncio.to_thread(read_decisions, paths)
    return build_status(view, decisions, usage, error)


def demand_text(demand: ResourceDemand) -> str:
    shape = ", ".join(f"{name}: {amount:g}" for name, amount in sorted(demand.shape.items()))
    if demand.kind == "placement_group":
        bundles = " + ".join(
            f"{n}x{{{', '.join(f'{k}: {v:g}' for k, v in sorted(b.items()))}}}"
            for b, n in demand.bundles
        )
        return f"{demand.count} placement group(s) {demand.strategy or ''} {bundles}".strip()
    what = "requested" if demand.kind == "request" else "task(s)/actor(s)"
    return f"{demand.count} {what} {{{shape}}}"


def group_line(group: GroupStatus) -> str:
    """One worker group under the autoscaler: `gpu: min 0, max 4, current 1, target 2`
    (target: the workers the autoscaler asked for; a fixed group shows its one count)."""
    bounds = f"min {group.min}, max {group.max}" if group.autoscale else f"fixed {group.min}"
    return f"{group.name}: {bounds}, current {group.current}, target {group.target}"


def pending_text(status: AutoscalerStatus, demand: ResourceDemand) -> str:
    """A pending demand and where it can go: `2 task(s)/actor(s) {GPU: 1} -> gpu`."""
    if len(status.groups) < 2:
        return demand_text(demand)
    holders = status.holders(demand)
    where = ", ".join(holders) if holders else "no group can hold it (or all are at max)"
    return f"{demand_text(demand)} -> {where}"


def summary_line(status: AutoscalerStatus | None) -> str:
    """One line for a status bar: `autoscaler running: 2 of 0..4 workers (target 3), 2
    pending` or `autoscaler off: <why>` ("" for a fixed-size cluster)."""
    if status is None:
        return ""
    if not status.on:
        return f"autoscaler {status.state}: {status.reason or 'no reason given'}"
    pending = sum(d.count for d in status.pending)
    text = (
        f"autoscaler {status.state}: {status.current} of {status.min}..{status.max} workers "
        f"(target {status.target})"
    )
    return text + (f", {pending} pending" if pending else "")


def status_to_json(status: AutoscalerStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "state": status.state,
        "on": status.on,
        "reason": status.reason,
        "kept_by": status.kept_by,
        "min": status.min,
        "max": status.max,
        "idle_timeout_s": status.idle_timeout_s,
        "current_workers": status.current,
        "target_workers": status.target,
        "restarts": status.restarts,
        "pending": [
            {
                "kind": d.kind,
                "shape": d.shape,
                "count": d.count,
                "strategy": d.strategy,
                "text": demand_text(d),
                "groups": status.holders(d),
            }
            for d in status.pending
        ],
        "groups": [
            {
                "name": g.name,
                "min": g.min,
                "max": g.max,
                "autoscale": g.autoscale,
                "current_workers": g.current,
                "target_workers": g.target,
                "text": group_line(g),
            }
            for g in status.groups
        ],
        "pending_error": status.pending_error,
        "decisions": [
            {"at": d.at, "action": d.action, "node": d.node, "reason": d.reason}
            for d in status.decisions
        ],
    }
