"""What an operation must change, decided from the stored desired state and what exists.

Pure: no API call, no file read. ClusterManager (lifecycle.py) reads the state, asks one of
these functions for the actions, and carries them out under one error policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.drain import drain_node_id
from raycai_core.cluster.healing import missing_workers, plan_heal
from raycai_core.cluster.types import Action, ClusterError, ScaleTarget
from raycai_core.cluster.view import ClusterView, NodeRow
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec

BROKEN = (AppStatus.STOPPED, AppStatus.FAILED)

# -- scale ---------------------------------------------------------------------------------

NOT_RUNNING, NOT_JOINED, IDLE, BUSY = range(4)


def removal_tier(row: NodeRow) -> int:
    if row.app_status not in (AppStatus.RUNNING, AppStatus.STARTING):
        return NOT_RUNNING
    if not row.joined:
        return NOT_JOINED
    if row.ray is not None and row.ray.idle:
        return IDLE
    return BUSY  # busy, or Ray did not say: assume work runs there


def removal_reason(row: NodeRow) -> str:
    return ("application " + row.app_status.value, "not joined", "idle", "busy")[removal_tier(row)]


def removal_order(rows: Iterable[NodeRow]) -> list[NodeRow]:
    """Workers in the order they should go: not running, not joined, idle, busy; then
    the highest index first within each group."""
    return sorted(rows, key=lambda r: (removal_tier(r), -r.index))


@dataclass(frozen=True)
class ScalePlan:
    """`spec` is the desired state to store; `create` or `remove` the workers to change
    (removals in removal order); `busy` the removed workers that run Ray work; `keep` the
    workers that stay (a drain request left for one of them is cancelled)."""

    before: int
    after: int
    spec: ClusterSpec
    create: list[Action]
    remove: list[Action]
    busy: list[str]
    keep: list[str]


def plan_scale(desired: Desired, target: ScaleTarget, workers: list[NodeRow]) -> ScalePlan:
    """Scale `workers` (the view's worker rows) to `target` applied to the stored count."""
    before = desired.spec.workers.count
    after = target.apply(before)
    chosen = removal_order(workers)[: max(0, len(workers) - after)]
    create: list[Action] = []
    remove: list[Action] = []
    if len(workers) < after:
        existing = {row.node for row in workers}
        create = [Action("create", node, "scale-up") for node in missing_workers(existing, after)]
    else:
        remove = [_removal(row) for row in chosen]
    gone = {action.node for action in remove}
    return ScalePlan(
        before=before,
        after=after,
        spec=desired.spec.with_workers(after),
        create=create,
        remove=remove,
        busy=[row.node for row in chosen if removal_tier(row) == BUSY],
        keep=[row.node for row in workers if row.node not in gone],
    )


def _removal(row: NodeRow) -> Action:
    """Drain first when the worker is part of Ray (and its launcher can), then delete."""
    drain_id = None
    note = ""
    if row.joined:
        drain_id = drain_node_id(row.record, row.ray.node_id if row.ray else None)
        if drain_id is None:
            why = "its launcher cannot drain" if row.record else "it has no launcher record"
            note = f"not drained ({why}); removing it"
    return Action("remove", row.node, removal_reason(row), row.app, drain_id, note)


# -- heal ----------------------------------------------------------------------------------


def heal_actions(view: ClusterView, desired: Desired | None, now: float) -> list[Action]:
    """The healing policy's steps (raycai_core.cluster.healing) as actions, in its order."""
    actions = []
    for step in plan_heal(view, desired, now).steps:
        if step.kind == "restart":
            row = view.row(step.node)
            assert row is not None and row.app is not None
            actions.append(Action("restart", step.node, step.reason, row.app))
        elif step.kind == "recreate":
            actions.append(Action("create", step.node, step.reason))
        else:
            actions.append(Action("resume", step.node, step.reason))
    return actions


# -- down ----------------------------------------------------------------------------------


def plan_down(members: list[ClusterApp]) -> list[Action]:
    """Every application of the cluster goes (no drain: the whole cluster stops)."""
    return [Action("delete", m.node, "cluster deleted", m) for m in members]


# -- up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpPlan:
    """`head` None: the head exists and runs. `workers`: create the missing, restart the
    stopped or failed, delete those beyond the count (beyond max when autoscaled)."""

    head: Action | None
    workers: list[Action]

    @property
    def creates(self) -> list[Action]:
        return [a for a in self.workers if a.kind == "create"]


def plan_up(spec: ClusterSpec, members: list[ClusterApp]) -> UpPlan:
    head = next((m for m in members if m.node == HEAD_NODE), None)
    head_action = None
    if head is None:
        head_action = Action("create", HEAD_NODE, "missing")
    elif head.app.status in BROKEN:
        head_action = Action("restart", HEAD_NODE, f"was {head.app.status.value}", head)
    workers = [m for m in members if m.node != HEAD_NODE]
    wanted = spec.workers.count
    # Workers the cluster's autoscaler added (up to its max) are its business.
    extra = _extra_by_index(workers, spec.workers.max if spec.workers.autoscale else wanted)
    actions = [
        Action("create", node, "missing")
        for node in missing_workers({m.node for m in workers}, wanted)
    ]
    actions += [
        Action("restart", m.node, f"was {m.app.status.value}", m)
        for m in workers
        if m.app.status in BROKEN and m not in extra
    ]
    actions += [Action("delete", m.node, "beyond the worker count", m) for m in extra]
    return UpPlan(head_action, actions)


def plan_token_restart(members: list[ClusterApp]) -> tuple[list[Action], list[Action]]:
    """Restart every node (head first, then the workers) after the Ray token was lost."""
    why = "the Ray token file was gone"
    head = [Action("restart", m.node, why, m) for m in members if m.node == HEAD_NODE]
    workers = [Action("restart", m.node, why, m) for m in members if m.node != HEAD_NODE]
    return head, workers


def _extra_by_index(workers: list[ClusterApp], wanted: int) -> list[ClusterApp]:
    """Workers beyond the wanted count (from an interrupted scale-down), highest index first."""
    ordered = sorted(workers, key=lambda m: m.index, reverse=True)
    return ordered[: max(0, len(workers) - wanted)]


def check_sizes_unchanged(
    previous: Desired | None, spec: ClusterSpec, members: list[ClusterApp]
) -> None:
    """Refuse an `up` that would change an existing cluster's node settings in place."""
    if previous is None or not members:
        return
    old, new = previous.spec, spec
    changed = [
        part
        for part, a, b in (
            ("head", old.head, new.head),
            ("workers", old.workers.node_settings(), new.workers.node_settings()),
            ("autoscaling", old.workers.autoscale, new.workers.autoscale),
            ("ray", old.ray, new.ray),
            ("env", old.env, new.env),
        )
        if a != b
    ]
    if changed:
        raise ClusterError(
            f"cluster {spec.name!r} already runs with other {' and '.join(changed)} settings; "
            f"only the worker count can change in place (`raycai scale`). To resize nodes, "
            f"`raycai down {spec.name}` then `raycai up` again"
        )
