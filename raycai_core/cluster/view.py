"""One view of a cluster, merged from three sources.

1. the CML app list (desired nodes and their application status),
2. the launchers' records in the project directory (phase, and why a node is not ready),
3. the Ray dashboard (which nodes really joined, and resources used of total).

`merge_cluster` is pure: the lifecycle and the watchers fetch, this function decides.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from raycai_core.cluster import phases
from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.phases import READY_PHASES, launcher_gone_reason, node_joined
from raycai_core.cluster.records import HeadAddress, NodeRecord
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE, node_group, node_index, role_of
from raycai_core.ray.matching import launcher_ip, match_ray_node

if TYPE_CHECKING:  # rolling_state builds on views and types
    from raycai_core.cluster.rolling_state import UpdateStatus

__all__ = [
    "READY_PHASES",
    "SCHEDULE_WAIT_S",
    "ClusterView",
    "GroupCounts",
    "NodeRow",
    "RayNodeInfo",
    "Totals",
    "merge_cluster",
]


# How long an application may stay STARTING, its launcher silent since the application's
# start, before its node's reason says the workspace has not scheduled it and names the
# quota: CML queues an application over the project's quota in STARTING without a word, and
# its own scheduling rarely takes a minute. RAYCAI_SCHEDULE_WAIT_S overrides it (tests use a
# second, so that nobody sleeps a minute).
SCHEDULE_WAIT_S = 60.0
SCHEDULE_WAIT_ENV = "RAYCAI_SCHEDULE_WAIT_S"


def schedule_threshold_s() -> float:
    """The threshold in use: RAYCAI_SCHEDULE_WAIT_S when it is a number >= 0, else 60 s."""
    try:
        value = float(os.environ.get(SCHEDULE_WAIT_ENV, ""))
    except ValueError:
        return SCHEDULE_WAIT_S
    return value if value >= 0 else SCHEDULE_WAIT_S


def waited_text(seconds: float) -> str:
    """`N min` (whole minutes), or `N s` under a minute."""
    return f"{int(seconds // 60)} min" if seconds >= 60 else f"{int(seconds)} s"


@dataclass(frozen=True)
class RayNodeInfo:
    """The part of a Ray node the view needs (the dashboard client's node, reduced)."""

    node_id: str
    node_name: str
    state: str  # ALIVE | DEAD
    is_head: bool = False
    cpu: tuple[float, float] = (0.0, 0.0)  # used, total
    gpu: tuple[float, float] = (0.0, 0.0)
    memory: tuple[float, float] = (0.0, 0.0)  # bytes
    start_time: float | None = None  # unix seconds; None when Ray does not say
    node_ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # raycai/cluster, raycai/node, ...

    @property
    def alive(self) -> bool:
        return self.state == "ALIVE"

    @property
    def idle(self) -> bool:
        return self.cpu[0] <= 0 and self.gpu[0] <= 0


@dataclass(frozen=True)
class Totals:
    cpu: tuple[float, float] = (0.0, 0.0)
    gpu: tuple[float, float] = (0.0, 0.0)
    memory: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class NodeRow:
    node: str
    role: str
    app: ClusterApp | None
    record: NodeRecord | None
    ray: RayNodeInfo | None
    # False when Ray's node list was not asked for or did not answer: the launcher's record
    # then says whether the node joined (see phases.node_joined).
    ray_known: bool = True
    observed_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return self.node

    @property
    def index(self) -> int:
        """0 for the head, k for `<group>-k`."""
        return node_index(self.node) or 0

    @property
    def group(self) -> str | None:
        """The worker group of this node (`worker` for `worker-k`); None for the head."""
        return node_group(self.node)

    @property
    def app_status(self) -> AppStatus:
        return self.app.app.status if self.app else AppStatus.UNKNOWN

    @property
    def joined(self) -> bool:
        ray_alive = (self.ray is not None and self.ray.alive) if self.ray_known else None
        running = self.app_status is AppStatus.RUNNING
        return node_joined(running, self.record, ray_alive, self.observed_at)

    @property
    def phase(self) -> str:
        return self.record.phase if self.record else "-"

    @property
    def not_ready_reason(self) -> str | None:
        """Why this node is not (yet) a live member of the Ray cluster; None when it is."""
        return not_ready_reason(self, self.observed_at)

    @property
    def unscheduled_s(self) -> float | None:
        """How long the application has been STARTING with no launcher record written since
        its start (the workspace has not run it yet); None for any other node."""
        if self.app is None or self.app_status is not AppStatus.STARTING:
            return None
        if self.record is not None and not _older_than_app(self.record, self):
            return None
        app = self.app.app
        since = app.starting_at or app.created_at
        return max(0.0, self.observed_at - since.timestamp()) if since is not None else None


@dataclass(frozen=True)
class GroupCounts:
    """One worker group's counts in a view. `desired` is the count raycai keeps (with the
    autoscaler: its minimum); `min`/`max` its bounds; `existing` the worker applications of
    the group (with the autoscaler: its target). A group no longer in the spec (left over
    until `up` removes its workers) has `in_spec` False and wants 0."""

    name: str
    desired: int
    min: int
    max: int
    autoscale: bool
    existing: int
    running: int
    joined: int
    in_spec: bool = True

    @property
    def all_joined(self) -> bool:
        """THE readiness rule for one group: every wanted worker exists and joined (an
        autoscaled group: at least its minimum joined; more come and go with demand)."""
        if self.autoscale:
            return self.joined >= self.desired
        return self.existing == self.desired and self.joined == self.desired

    @property
    def missing(self) -> int:
        return max(0, self.desired - self.existing)


@dataclass(frozen=True)
class ClusterView:
    name: str
    desired: Desired | None
    rows: list[NodeRow]
    head: HeadAddress | None
    ray_nodes: list[RayNodeInfo] = field(default_factory=list)
    totals: Totals | None = None
    ray_error: str | None = None
    observed_at: float = field(default_factory=time.time)
    ray_known: bool = True  # Ray's node list answered (else `joined` is the launchers' word)
    schedule_wait_s: float = field(default_factory=schedule_threshold_s)
    # Seen from outside the project (remote mode): Ray cannot be asked, so every launcher's
    # record joined is ready (cluster/remote.py).
    remote: bool = False
    # The cluster's last rolling update (rolling.json), if it ever had one.
    update: UpdateStatus | None = None

    @property
    def updating(self) -> str | None:
        """A running update's progress: its new workers join one at a time, so the cluster
        is not READY meanwhile, but keeps its capacity."""
        update = self.update
        return update.record.progress_text() if update is not None and update.running else None

    @property
    def desired_workers(self) -> int:
        """Every group's desired count (autoscaled: its minimum), summed."""
        if self.desired is None:
            return 0
        return sum(group.count for group in self.desired.spec.groups.values())

    @property
    def group_names(self) -> list[str]:
        """The spec's groups in its order, then any group whose workers exist but that the
        spec no longer names."""
        names = list(self.desired.spec.group_names) if self.desired else []
        for row in self.worker_rows:
            if row.group is not None and row.group not in names:
                names.append(row.group)
        return names

    def group_rows(self, group: str) -> list[NodeRow]:
        """The worker rows (with an application) of one group."""
        return [row for row in self.worker_rows if row.group == group]

    def group_counts(self, group: str) -> GroupCounts:
        rows = self.group_rows(group)
        spec = self.desired.spec.groups.get(group) if self.desired else None
        return GroupCounts(
            name=group,
            desired=spec.count if spec else 0,
            min=spec.min if spec else 0,
            max=spec.max if spec else 0,
            autoscale=spec.autoscale if spec else False,
            existing=len(rows),
            running=sum(1 for r in rows if r.app_status is AppStatus.RUNNING),
            joined=sum(1 for r in rows if r.joined),
            in_spec=spec is not None,
        )

    @property
    def groups(self) -> list[GroupCounts]:
        """Each worker group's counts, in the spec's order."""
        return [self.group_counts(name) for name in self.group_names]

    @property
    def autoscaled(self) -> bool:
        """Any group autoscales (the cluster then runs Ray's autoscaler)."""
        return self.desired is not None and any(
            group.autoscale for group in self.desired.spec.groups.values()
        )

    @property
    def worker_rows(self) -> list[NodeRow]:
        return [row for row in self.rows if row.role == "worker" and row.app is not None]

    @property
    def head_row(self) -> NodeRow | None:
        return next((row for row in self.rows if row.node == HEAD_NODE), None)

    @property
    def workers_running(self) -> int:
        return sum(1 for r in self.worker_rows if r.app_status is AppStatus.RUNNING)

    @property
    def workers_joined(self) -> int:
        return sum(1 for r in self.worker_rows if r.joined)

    @property
    def nodes_alive(self) -> int:
        return sum(1 for n in self.ray_nodes if n.alive)

    @property
    def nodes_dead(self) -> int:
        return sum(1 for n in self.ray_nodes if not n.alive)

    @property
    def nodes_wanted(self) -> int:
        """The head and the desired (autoscaled: minimum) workers."""
        return self.desired_workers + 1

    @property
    def nodes_joined(self) -> int:
        head = self.head_row
        return self.workers_joined + (1 if head is not None and head.joined else 0)

    @property
    def all_joined(self) -> bool:
        """Every desired node exists, runs and has joined (not just 'app RUNNING'), by Ray's
        word when it answered, else the launchers'; in every worker group. An autoscaled
        group: at least its min workers joined (more come and go with demand)."""
        head = self.head_row
        if head is None or not head.joined:
            return False
        if self.desired is None:
            return not self.worker_rows
        return all(counts.all_joined for counts in self.groups)

    @property
    def ready(self) -> bool:
        """THE readiness rule (`raycai up --wait`, `raycai status`, the create form, the
        cluster screen): every node joined and Ray answered, so Ray itself lists them;
        from outside the project (`remote`), every launcher's record joined."""
        return (self.ray_known or self.remote) and self.all_joined

    @property
    def ray_not_answering(self) -> bool:
        """Ray was asked (the head published its address) and did not answer."""
        return self.ray_error is not None and self.head is not None

    @property
    def failed_row(self) -> NodeRow | None:
        """The first node whose launcher gave up (its record's `error` says why)."""
        return next((r for r in self.rows if r.record and r.record.phase == phases.FAILED), None)

    @property
    def not_ready_reason(self) -> str | None:
        """Why the cluster is not ready, in one line; None when it is."""
        if self.ready:
            return None
        if self.all_joined:
            if self.ray_error is not None:
                return f"every node joined, but Ray does not answer: {self.ray_error}"
            return "every node joined; waiting for Ray's own node list"
        waiting = {row.node for row in self.schedule_waiting}
        reasons = [note] if (note := self.schedule_note) else []
        reasons += [
            f"{r.node}: {why}"
            for r in self.rows
            if r.node not in waiting and (why := self.reason(r))
        ]
        several = len(self.group_names) > 1
        for counts in self.groups:
            if counts.missing > 0:
                where = f" of group {counts.name}" if several else ""
                reasons.append(f"{counts.missing} worker application(s){where} not created yet")
            elif not counts.in_spec and counts.existing:
                reasons.append(
                    f"group {counts.name} is no longer in the spec (`raycai up` removes it)"
                )
        return "not all nodes joined Ray; " + "; ".join(reasons[:5])

    def reason(self, row: NodeRow) -> str | None:
        """Why `row` is not ready, Ray's silence included: while Ray does not answer, a
        launcher's 'running' or 'joined' is unconfirmed; an application the workspace has
        not run for longer than `schedule_wait_s` names the quota."""
        if self.ray_error and row.record is not None and row.record.phase in READY_PHASES:
            return f"launcher says {row.record.phase}; Ray is not answering, so unconfirmed"
        waited = row.unscheduled_s
        if waited is not None and waited >= self.schedule_wait_s:
            return self._schedule_text("it", waited)
        return row.not_ready_reason

    @property
    def unscheduled_rows(self) -> list[NodeRow]:
        """The nodes whose applications the workspace has not run yet (STARTING, no record
        since their start), however long they waited."""
        return [row for row in self.rows if row.unscheduled_s is not None]

    @property
    def schedule_waiting(self) -> list[NodeRow]:
        """The unscheduled nodes that waited longer than `schedule_wait_s`."""
        return [
            row
            for row in self.unscheduled_rows
            if (row.unscheduled_s or 0.0) >= self.schedule_wait_s
        ]

    @property
    def requested_text(self) -> str:
        """What the applications waiting to be scheduled ask for, summed: the resources the
        project's quota must still find room for."""
        apps = [row.app.app for row in self.unscheduled_rows if row.app is not None]
        cpu = sum(app.cpu for app in apps)
        memory = sum(app.memory for app in apps)
        gpu = sum(app.nvidia_gpu for app in apps)
        by = f" by the {len(apps)} waiting applications" if len(apps) > 1 else ""
        return f"cpu {cpu:g}, memory {memory:g} GB, gpu {gpu} requested{by}"

    @property
    def schedule_note(self) -> str | None:
        """One line for the nodes the workspace has not scheduled for longer than the
        threshold (`up`'s progress, the cluster's reason); None when there are none."""
        waiting = self.schedule_waiting
        if not waiting:
            return None
        longest = max(row.unscheduled_s or 0.0 for row in waiting)
        nodes = ", ".join(row.node for row in waiting)
        return f"{nodes}: " + self._schedule_text("them" if len(waiting) > 1 else "it", longest)

    def _schedule_text(self, which: str, waited: float) -> str:
        return (
            f"waiting for the workspace to schedule {which} ({waited_text(waited)}); "
            f"the project may be out of quota: {self.requested_text}"
        )

    def with_ray(self, nodes: list[RayNodeInfo] | None, error: str | None) -> ClusterView:
        """This view's applications and records merged with a Ray answer obtained earlier
        (`nodes` None: none yet, so the launchers' records say who joined)."""
        records = {row.node: row.record for row in self.rows if row.record is not None}
        apps = [row.app for row in self.rows if row.app is not None]
        return merge_cluster(
            self.name,
            self.desired,
            apps,
            records,
            self.head,
            nodes,
            error,
            now=self.observed_at,
            schedule_wait=self.schedule_wait_s,
            update=self.update,
        )

    def uptime_s(self, row: NodeRow) -> float | None:
        """How long `row`'s application has been RUNNING, at the moment of this view."""
        if row.app is None or row.app_status is not AppStatus.RUNNING:
            return None
        since = row.app.app.running_at
        return max(0.0, self.observed_at - since.timestamp()) if since else None

    @property
    def app_ids(self) -> list[str]:
        return [row.app.app.id for row in self.rows if row.app is not None]

    def row(self, node: str) -> NodeRow | None:
        return next((r for r in self.rows if r.node == node), None)


def pick_ray_node(
    nodes: list[RayNodeInfo],
    cluster: str,
    node: str,
    app: ClusterApp | None,
    record: NodeRecord | None,
    head: HeadAddress | None,
) -> RayNodeInfo | None:
    """`node`'s Ray node by THE matching rule (raycai_core.ray.matching, which the head's
    provider copies): its labels and a start no earlier than its application's creation
    (alive first, newest first), else its launcher record's IP."""
    ip = recorded_ip(node, app, record, head)
    return match_ray_node(nodes, cluster, node, created_at(app), ip)


def created_at(app: ClusterApp | None) -> float | None:
    created = app.app.created_at if app is not None else None
    return created.timestamp() if created is not None else None


def recorded_ip(
    node: str, app: ClusterApp | None, record: NodeRecord | None, head: HeadAddress | None
) -> str | None:
    """`node`'s IP in its launcher records written by its application: the head's head.json,
    then nodes/<node>.json (the provider's `recorded_ip`)."""
    records: list[tuple[str | None, float | None]] = []
    if node == HEAD_NODE and head is not None:
        records.append((head.ip, head.started_at))
    if record is not None:
        records.append((record.ip, record.started_at))
    return launcher_ip(records, created_at(app))


def merge_cluster(
    name: str,
    desired: Desired | None,
    apps: list[ClusterApp],
    records: dict[str, NodeRecord],
    head: HeadAddress | None,
    ray_nodes: list[RayNodeInfo] | None,
    ray_error: str | None = None,
    now: float | None = None,
    schedule_wait: float | None = None,
    update: UpdateStatus | None = None,
) -> ClusterView:
    """`ray_nodes` None: Ray was not asked (the launchers' records say who joined).
    `schedule_wait`: the view's `schedule_wait_s` (None: SCHEDULE_WAIT_S, or its override).
    `update`: the cluster's last rolling update (ClusterFiles.update)."""
    now = time.time() if now is None else now
    nodes = ray_nodes or []
    ray_known = ray_nodes is not None and ray_error is None
    by_node = {member.node: member for member in apps}
    names = set(by_node)
    names.add(HEAD_NODE)
    order = {group: i for i, group in enumerate(desired.spec.group_names if desired else ())}

    def position(node: str) -> tuple[int, int, str, int]:
        """The head, then each group (the spec's order, then others by name) by index."""
        group = node_group(node)
        if group is None:
            return (0, 0, node, 0)
        return (1, order.get(group, len(order)), group, node_index(node) or 0)

    rows = []
    for node in sorted(names, key=position):
        rows.append(
            NodeRow(
                node=node,
                role=role_of(node),
                app=by_node.get(node),
                record=records.get(node),
                ray=pick_ray_node(nodes, name, node, by_node.get(node), records.get(node), head),
                ray_known=ray_known,
                observed_at=now,
            )
        )
    totals = None
    alive = [n for n in nodes if n.alive]
    if alive:
        totals = Totals(
            cpu=(sum(n.cpu[0] for n in alive), sum(n.cpu[1] for n in alive)),
            gpu=(sum(n.gpu[0] for n in alive), sum(n.gpu[1] for n in alive)),
            memory=(sum(n.memory[0] for n in alive), sum(n.memory[1] for n in alive)),
        )
    return ClusterView(
        name=name,
        desired=desired,
        rows=rows,
        head=head,
        ray_nodes=nodes,
        totals=totals,
        ray_error=ray_error,
        observed_at=now,
        ray_known=ray_known,
        schedule_wait_s=schedule_threshold_s() if schedule_wait is None else schedule_wait,
        update=update,
    )


def not_ready_reason(row: NodeRow, now: float | None = None) -> str | None:
    if row.joined:
        return None
    now = time.time() if now is None else now
    record = row.record
    status = row.app_status
    if row.app is None:
        return "no application (not created yet, or deleted)"
    if record is not None and record.phase == phases.FAILED:
        return record.error or "the launcher failed"
    if status is AppStatus.STARTING and (record is None or _older_than_app(record, row)):
        return "waiting for CML to start the application (quota or scheduling)"
    if status is AppStatus.FAILED:
        detail = f": {record.error}" if record and record.error else ""
        return f"application failed; the platform restarts it{detail}"
    if status in (AppStatus.STOPPED, AppStatus.STOPPING):
        return f"application {status.value}"
    if record is None:
        return "launcher has not reported yet"
    gone = launcher_gone_reason(record, now) if status is AppStatus.RUNNING else None
    if gone is not None:
        return gone
    if record.phase == phases.WAITING_FOR_HEAD:
        return record.error or "waiting for the head to publish its address"
    if record.phase in phases.PROGRESS_PHASES:
        return f"{record.phase.replace('-', ' ')}" + (f": {record.error}" if record.error else "")
    if record.phase in (phases.DRAINING, phases.DRAINED):
        return f"{record.phase}: being removed" + (f" ({record.detail})" if record.detail else "")
    if record.phase in READY_PHASES:
        return "launcher says joined; Ray does not list the node yet"
    if record.error:
        return f"{record.phase}: {record.error}"
    return record.phase


def _older_than_app(record: NodeRecord, row: NodeRow) -> bool:
    """A record whose launcher started before the app's current start belongs to a previous
    run (an earlier application of the same name writes its last record as it stops, which
    may be seconds before a new one is created: its start, not its last write, tells)."""
    stamp = record.started_at if record.started_at is not None else record.updated_at
    if row.app is None or stamp is None:
        return False
    started: datetime | None = row.app.app.starting_at or row.app.app.created_at
    return started is not None and stamp < started.timestamp() - 5
