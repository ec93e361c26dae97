"""What an operation must change, decided from the stored desired state and what exists.

Pure: no API call, no file read. ClusterManager (lifecycle.py) reads the state, asks one of
these functions for the actions, and carries them out under one error policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.drain import drain_node_id
from raycai_core.cluster.healing import missing_workers, plan_heal
from raycai_core.cluster.types import Action, ClusterError, GroupNotGiven, ScaleTarget
from raycai_core.cluster.view import ClusterView, NodeRow
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec, WorkerGroupSpec

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
    (removals in removal order within each group); `busy` the removed workers that run Ray
    work; `keep` the workers that stay (a drain request left for one of them is cancelled);
    `groups` each scaled group's (before, after) count; `before`/`after` their sums."""

    before: int
    after: int
    spec: ClusterSpec
    create: list[Action]
    remove: list[Action]
    busy: list[str]
    keep: list[str]
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)


ScaleTargets = ScaleTarget | Mapping[str, ScaleTarget]


def group_targets(spec: ClusterSpec, targets: ScaleTargets) -> dict[str, ScaleTarget]:
    """`{group: target}` for `spec`: a bare target is its one group's; a cluster with several
    groups needs each named. ClusterError names the groups when a name is unknown or missing."""
    names = ", ".join(spec.group_names)
    if isinstance(targets, ScaleTarget):
        if len(spec.groups) != 1:
            raise GroupNotGiven(
                f"cluster {spec.name} has several worker groups ({names}): say which, "
                f"e.g. `raycai scale {spec.name} {spec.group_names[0]}={targets}`"
            )
        return {spec.group_names[0]: targets}
    if not targets:
        raise GroupNotGiven(f"no worker group to scale (cluster {spec.name}'s groups: {names})")
    unknown = [group for group in targets if group not in spec.groups]
    if unknown:
        raise GroupNotGiven(
            f"cluster {spec.name} has no worker group {', '.join(map(repr, unknown))} "
            f"(its groups: {names})"
        )
    return dict(targets)


def scaled_spec(spec: ClusterSpec, targets: Mapping[str, ScaleTarget]) -> ClusterSpec:
    """`spec` with each group's count (and bounds) moved to its target."""
    for group, target in targets.items():
        spec = spec.with_group_count(group, target.apply(spec.group(group).count))
    return spec


def plan_scale(desired: Desired, target: ScaleTargets, workers: list[NodeRow]) -> ScalePlan:
    """Scale `workers` (the view's worker rows) to each target, applied to the group's stored
    count: a bare ScaleTarget for a one-group cluster, else `{group: target}`; every group
    is planned from the same state and stored at once."""
    targets = group_targets(desired.spec, target)
    create: list[Action] = []
    remove: list[Action] = []
    busy: list[str] = []
    counts: dict[str, tuple[int, int]] = {}
    for group, wanted in targets.items():
        rows = [row for row in workers if row.group == group]
        before = desired.spec.group(group).count
        after = wanted.apply(before)
        counts[group] = (before, after)
        if len(rows) < after:
            existing = {row.node for row in rows}
            create += [
                Action("create", node, "scale-up")
                for node in missing_workers(existing, after, group)
            ]
        else:
            chosen = removal_order(rows)[: len(rows) - after]
            remove += [_removal(row) for row in chosen]
            busy += [row.node for row in chosen if removal_tier(row) == BUSY]
    gone = {action.node for action in remove}
    return ScalePlan(
        before=sum(before for before, _ in counts.values()),
        after=sum(after for _, after in counts.values()),
        spec=scaled_spec(desired.spec, targets),
        create=create,
        remove=remove,
        busy=busy,
        keep=[row.node for row in workers if row.node not in gone],
        groups=counts,
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
    """Each group converges to its own count; the workers of a group the spec no longer
    names are deleted."""
    head = next((m for m in members if m.node == HEAD_NODE), None)
    head_action = None
    if head is None:
        head_action = Action("create", HEAD_NODE, "missing")
    elif head.app.status in BROKEN:
        head_action = Action("restart", HEAD_NODE, f"was {head.app.status.value}", head)
    workers = [m for m in members if m.node != HEAD_NODE]
    creates: list[Action] = []
    restarts: list[Action] = []
    deletes: list[Action] = []
    for name, group in spec.groups.items():
        mine = [m for m in workers if m.group == name]
        # Workers the cluster's autoscaler added (up to the group's max) are its business.
        extra = _extra_by_index(mine, group.max if group.autoscale else group.count)
        creates += [
            Action("create", node, "missing")
            for node in missing_workers({m.node for m in mine}, group.count, name)
        ]
        restarts += [
            Action("restart", m.node, f"was {m.app.status.value}", m)
            for m in mine
            if m.app.status in BROKEN and m not in extra
        ]
        deletes += [Action("delete", m.node, "beyond the worker count", m) for m in extra]
    deletes += [
        Action("delete", m.node, f"group {m.group} is no longer in the spec", m)
        for m in workers
        if m.group not in spec.groups
    ]
    return UpPlan(head_action, creates + restarts + deletes)


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
    """Refuse an `up` that would change an existing cluster's node settings in place: the
    head's, any group's that both specs name, whether Ray's autoscaler runs, Ray's and the
    environment. A group added or removed is fine (its workers are created or deleted)."""
    if previous is None or not members:
        return
    old, new = previous.spec, spec
    parts = [
        ("head", old.head, new.head),
        ("autoscaling", _autoscaled(old), _autoscaled(new)),
        ("ray", old.ray, new.ray),
        ("env", old.env, new.env),
    ]
    several = len(old.groups) > 1 or len(new.groups) > 1
    for name in old.group_names:
        if name in new.groups:
            what = f"worker group {name}" if several else "workers"
            a, b = old.group(name), new.group(name)
            parts.append((what, _node_settings(a), _node_settings(b)))
    changed = [part for part, a, b in parts if a != b]
    if changed:
        raise ClusterError(
            f"cluster {spec.name!r} already runs with other {' and '.join(changed)} settings; "
            f"only the worker counts can change in place (`raycai scale`), and worker groups "
            f"can be added or removed. `raycai up` on the command line replaces the nodes "
            f"one at a time (a rolling update; see `raycai up --help`)"
        )


def _autoscaled(spec: ClusterSpec) -> bool:
    return any(group.autoscale for group in spec.groups.values())


def _node_settings(group: WorkerGroupSpec) -> tuple[object, ...]:
    """What a group's running workers were started with (a change needs new nodes)."""
    return (
        group.node_settings(),
        group.accelerator,
        group.accelerator_label_id,
        group.resources,
        group.labels,
    )
