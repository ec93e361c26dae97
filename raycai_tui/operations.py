"""The app's long operations (create, scale, restart, delete, heal): one per cluster and kind.

They belong to the App, not to a screen: each runs in an App-level worker, so leaving or
reopening a screen neither cancels nor duplicates it (Textual cancels a screen's workers when
the screen goes). A request of a kind already running on the same cluster joins it: scale
requests queue behind the one being carried out and combine per worker group (+1 then +1 of
group gpu is gpu +2; the core applies each to the group's stored count under its lock);
restarts queue their nodes; a second
create or delete is refused with a message. A delete stops the other operations of its cluster
first. Progress goes into the app's event store, and every change is broadcast to the screens
(OperationChanged) so that each shows what runs on its clusters.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from raycai_tui.format import describe_error
from raycai_tui.messages import Event, Level, OperationChanged

if TYPE_CHECKING:
    from textual.worker import Worker

    from raycai_core.cluster.types import Progress, ProgressCallback, ScaleTarget
    from raycai_core.spec import ClusterSpec
    from raycai_tui.app import RaycaiApp
    from raycai_tui.services import Services, Snapshot

Kind = Literal["create", "scale", "restart", "delete", "heal", "suspend", "resume", "update"]
VERBS: dict[Kind, str] = {
    "create": "creating",
    "scale": "scaling",
    "restart": "restarting",
    "delete": "deleting",
    "heal": "healing",
    "suspend": "suspending",
    "resume": "resuming",
    "update": "updating",
}
# What stays, and how to finish, when the app quits in the middle of an operation.
REMAINS: dict[Kind, str] = {
    "create": "what was created stays; `raycai up {name}` finishes it",
    "scale": "the new worker count is saved; `raycai scale {name} [GROUP=]N` finishes it",
    "restart": "the restarts already requested go on",
    "delete": "{name} stays marked for deletion; `raycai down {name}` finishes it",
    "heal": "healing resumes at the next start (or `raycai heal {name}`)",
    "suspend": "{name} stays marked suspended; `raycai suspend {name}` finishes it",
    "resume": "{name} is marked active; healing or `raycai resume {name}` finishes it",
    "update": "the nodes replaced so far stay; `raycai up` with the new spec goes on",
}


@dataclass(frozen=True)
class ScaleRequest:
    target: ScaleTarget
    allow_busy: bool = False  # may the core remove a worker that runs Ray tasks?
    group: str | None = None  # the worker group; None: the cluster's only one

    def __str__(self) -> str:
        """`+1`, or `gpu=+1` for a named group (as `raycai scale` takes it)."""
        return f"{self.group}={self.target}" if self.group else str(self.target)


def merge_scale(first: ScaleRequest, then: ScaleRequest) -> ScaleRequest | None:
    """One request that does what `first` then `then` do, or None when no single one does.

    Only exact merges, of one group: a count followed by anything, or two deltas of the same
    sign (a delta stops at zero workers, so -1 then +1 differs from doing nothing when no
    worker is left).
    """
    from raycai_core.cluster.types import ScaleTarget

    if first.group != then.group:
        return None
    a, b = first.target, then.target
    if b.count is not None:
        return then
    allow_busy = first.allow_busy and then.allow_busy
    delta = b.delta or 0
    if a.count is not None:
        return ScaleRequest(ScaleTarget(count=b.apply(a.count)), allow_busy, then.group)
    if (a.delta or 0) * delta >= 0:
        return ScaleRequest(ScaleTarget(delta=(a.delta or 0) + delta), allow_busy, then.group)
    return None


def queue_scale(queue: deque[object], request: ScaleRequest) -> None:
    """Add `request` to the requests still to do: merged into the last one of its group when
    nothing of that group comes after it (groups are scaled independently, so a request of
    another group in between changes nothing), else queued at the end."""
    for index in range(len(queue) - 1, -1, -1):
        queued = queue[index]
        if isinstance(queued, ScaleRequest) and queued.group == request.group:
            merged = merge_scale(queued, request)
            if merged is None:
                break
            queue[index] = merged
            return
    queue.append(request)


@dataclass(eq=False)
class Operation:
    """One operation of the app on one cluster; `requests` are merged requests still to do."""

    cluster: str
    kind: Kind
    started_at: float = field(default_factory=time.time)
    detail: str = ""  # "2 → 3", a node name...
    ended: bool = False
    error: str | None = None
    requests: deque[object] = field(default_factory=deque)
    current: object | None = None  # the request being carried out
    counts: dict[str | None, int] = field(default_factory=dict)  # scale: stored, per group
    worker: Worker[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, Kind]:
        return (self.cluster, self.kind)

    @property
    def short(self) -> str:
        """e.g. `scaling 2 → 3…` (the clusters list names the cluster already)."""
        return f"{VERBS[self.kind]}{' ' + self.detail if self.detail else ''}…"

    @property
    def label(self) -> str:
        """e.g. `scaling demo 2 → 3…`."""
        return f"{VERBS[self.kind]} {self.cluster}{' ' + self.detail if self.detail else ''}…"

    @property
    def remains(self) -> str:
        return REMAINS[self.kind].format(name=self.cluster)


class Operations:
    """The app's operations service; `cluster in operations` says whether one runs on it."""

    def __init__(self, app: RaycaiApp) -> None:
        self._app = app
        self._running: dict[tuple[str, Kind], Operation] = {}

    def __contains__(self, cluster: object) -> bool:
        return any(name == cluster for name, _ in self._running)

    def running(self, cluster: str | None = None) -> list[Operation]:
        return [op for op in self._running.values() if cluster is None or op.cluster == cluster]

    def get(self, cluster: str, kind: Kind) -> Operation | None:
        return self._running.get((cluster, kind))

    def labels(self) -> dict[str, str]:
        """cluster -> what runs on it, for the clusters list."""
        labels: dict[str, list[str]] = {}
        for op in self._running.values():
            labels.setdefault(op.cluster, []).append(op.short)
        return {name: ", ".join(texts) for name, texts in labels.items()}

    # -- requests (from the screens and the app) --------------------------------------

    def scale(
        self,
        cluster: str,
        target: ScaleTarget,
        *,
        group: str | None = None,
        allow_busy: bool = False,
    ) -> bool:
        """Ask the core to scale `group` (None: the cluster's only group) by `target` (a
        delta or a count); joins a running scale of the cluster, merged per group."""
        if self._services() is None or self._refused_while_deleting(cluster, "scale"):
            return False
        request = ScaleRequest(target, allow_busy, group)
        self._event(cluster, f"scale {request} requested")
        op = self._running.get((cluster, "scale"))
        if op is not None:
            queue_scale(op.requests, request)
            self._note_count(op, group)
            self._describe_scale(op)
            self._changed(op)
            return True
        op = Operation(cluster, "scale", requests=deque([request]))
        self._note_count(op, group)
        self._start(op, self._run_scale)
        return True

    def create(self, spec: ClusterSpec) -> bool:
        name = spec.name
        if self._services() is None or self._refused_while_deleting(name, "create"):
            return False
        if (name, "create") in self._running:
            self._app.notify(f"{name} is already being created.", severity="warning")
            return False

        async def run(op: Operation) -> None:
            services = self._require_services()
            await services.manager(self._progress(op)).up(spec, wait=False, timeout=900.0)

        self._start(Operation(name, "create"), run)
        return True

    def update(self, spec: ClusterSpec, *, restart_head: bool = False) -> bool:
        """A rolling update of the cluster to `spec` (raycai_tui/rolling.py)."""
        name = spec.name
        if self._services() is None or self._refused_while_deleting(name, "update"):
            return False
        if (name, "update") in self._running:
            self._app.notify(f"{name} is already being updated.", severity="warning")
            return False

        async def run(op: Operation) -> None:
            from raycai_tui.rolling import run_update

            def show(text: str) -> None:
                op.detail = text
                self._changed(op)

            services = self._require_services()
            said = await run_update(services, self._progress(op), spec, restart_head, show)
            self._event(name, said, notify=True)

        self._start(Operation(name, "update"), run)
        return True

    def delete(self, cluster: str) -> bool:
        if self._services() is None:
            return False
        if (cluster, "delete") in self._running:
            self._app.notify(f"{cluster} is already being deleted.", severity="warning")
            return False
        for op in self.running(cluster):  # the deletion supersedes them
            if op.worker is not None:
                op.worker.cancel()
            self._event(cluster, f"stopped {op.label} ({cluster} is being deleted)", "warning")

        async def run(op: Operation) -> None:
            services = self._require_services()
            deleted = await services.manager(self._progress(op)).down(cluster)
            self._app.notify(
                f"{cluster}: deleted {len(deleted)} application(s)", title="Cluster deleted"
            )

        self._start(Operation(cluster, "delete"), run)
        return True

    def suspend(self, cluster: str) -> bool:
        """Suspend the cluster (raycai_core.cluster.suspend): its applications stop."""
        return self._suspend_or_resume(cluster, "suspend")

    def resume(self, cluster: str) -> bool:
        """Start a suspended cluster again (its stopped applications restart)."""
        return self._suspend_or_resume(cluster, "resume")

    def _suspend_or_resume(self, cluster: str, kind: Kind) -> bool:
        if self._services() is None or self._refused_while_deleting(cluster, kind):
            return False
        other: Kind = "resume" if kind == "suspend" else "suspend"
        if (cluster, kind) in self._running or (cluster, other) in self._running:
            self._app.notify(f"{cluster} is already being {VERBS[kind]}.", severity="warning")
            return False

        async def run(op: Operation) -> None:
            from raycai_core.cluster import suspend as suspending

            manager = self._require_services().manager(self._progress(op))
            if kind == "suspend":
                await suspending.suspend(manager, cluster, reason="suspended from raycai-tui")
            else:
                await suspending.resume(manager, cluster, wait=False)
            done = "suspended: its applications hold no quota" if kind == "suspend" else "resumed"
            self._event(cluster, f"{cluster} {done}", notify=True)

        self._start(Operation(cluster, kind), run)
        return True

    def restart(self, cluster: str, node: str, app_id: str) -> bool:
        if self._services() is None or self._refused_while_deleting(cluster, "restart"):
            return False
        op = self._running.get((cluster, "restart"))
        if op is not None:
            if (node, app_id) == op.current or (node, app_id) in op.requests:
                self._app.notify(f"{node} is already being restarted.")
                return False
            op.requests.append((node, app_id))
            return True
        op = Operation(cluster, "restart", requests=deque([(node, app_id)]))
        self._start(op, self._run_restart)
        return True

    def heal(self, snapshot: Snapshot, cluster: str) -> bool:
        """Heal one cluster (the app calls this after a poll); never while another op runs."""
        if cluster in self or self._app.services is None:
            return False

        async def run(op: Operation) -> None:
            from raycai_tui.healing import heal_clusters

            events = await heal_clusters(self._require_services(), snapshot, [cluster])
            for event in events:
                self._app.add_event(event, notify=True)

        self._start(Operation(cluster, "heal"), run)
        return True

    # -- running --------------------------------------------------------------------

    def _start(self, op: Operation, run: Callable[[Operation], Awaitable[None]]) -> None:
        self._running[op.key] = op
        op.worker = self._app.run_worker(
            self._guarded(op, run), name=op.label, group="operations", exit_on_error=False
        )
        self._changed(op)

    async def _guarded(self, op: Operation, run: Callable[[Operation], Awaitable[None]]) -> None:
        """Run `op`; a failure becomes an event and a notification, never an app error."""
        cancelled = False
        try:
            await run(op)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception as exc:  # any failure is shown; the app keeps running
            self._partly_done(op, exc)
            op.error = describe_error(exc)
            dropped = f" ({len(op.requests)} queued request(s) dropped)" if op.requests else ""
            self._event(op.cluster, f"{op.label[:-1]} failed: {op.error}{dropped}", "error", True)
        finally:
            op.ended = True
            op.requests.clear()
            if self._running.get(op.key) is op:
                del self._running[op.key]
            self._changed(op)
            if not cancelled:
                self._app.poll_soon()

    def _partly_done(self, op: Operation, error: Exception) -> None:
        """An operation that failed part-way: one event per action it took and per failure
        (the notification then says it failed, with the first cause)."""
        from raycai_core.cluster.types import ActionsFailed

        if not isinstance(error, ActionsFailed):
            return
        for done in error.done:
            self._event(op.cluster, f"{VERBS[op.kind]}: {done}")
        for failure in error.failed:
            self._event(op.cluster, f"{VERBS[op.kind]}: {failure}", "error")
        for action in error.skipped:
            self._event(op.cluster, f"{VERBS[op.kind]}: not attempted: {action}", "warning")

    async def _run_scale(self, op: Operation) -> None:
        from raycai_core.cluster.types import WorkersBusy

        services = self._require_services()
        while op.requests:
            request = op.requests.popleft()
            assert isinstance(request, ScaleRequest)
            op.current = request
            self._describe_scale(op)
            self._changed(op)
            manager = services.manager(self._progress(op))
            target = request.target if request.group is None else {request.group: request.target}
            try:
                result = await manager.scale(op.cluster, target, allow_busy=request.allow_busy)
            except WorkersBusy as busy:
                op.current = None
                self._ask_about_busy(op.cluster, request, busy.nodes)
                continue
            op.counts[request.group] = result.after
            op.current = None
            what = f"group {request.group} workers" if request.group else "workers"
            self._event(op.cluster, f"{what} {result.before} -> {result.after}")

    async def _run_restart(self, op: Operation) -> None:
        services = self._require_services()
        while op.requests:
            op.current = op.requests.popleft()
            node, app_id = op.current  # type: ignore[misc]
            op.detail = node
            self._changed(op)
            restarted = await services.cml.restart_application(app_id)
            status = restarted.status.value
            self._event(op.cluster, f"{node}: restart requested ({status})", "warning")

    def _ask_about_busy(self, cluster: str, request: ScaleRequest, nodes: list[str]) -> None:
        """Say which workers are busy; scale again with allow_busy only on an explicit yes."""
        from raycai_tui.screens.confirm import ConfirmScreen

        listed = ", ".join(nodes)
        self._event(cluster, f"scale {request} waits: {listed} run Ray tasks", "warning")
        question = (
            f"Scaling {cluster} by {request} would remove {listed}, which "
            f"{'is' if len(nodes) == 1 else 'are'} running Ray tasks. Remove anyway? Ray is "
            "asked to drain first: nothing new is scheduled there and running tasks get a grace "
            "period to finish; what still runs after it is stopped (Ray retries what it can)."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.scale(cluster, request.target, group=request.group, allow_busy=True)
            else:
                self._event(cluster, f"scale {request} cancelled: busy workers kept")

        self._app.push_screen(
            ConfirmScreen(f"Remove busy workers of {cluster}?", question, nodes, "Remove"),
            answered,
        )

    # -- helpers --------------------------------------------------------------------

    def _describe_scale(self, op: Operation) -> None:
        """`2 → 3` (`gpu 0 → 1, cpu 2 → 1` for named groups) from the stored counts last
        seen (display only), else the requests."""
        requests = [r for r in (op.current, *op.requests) if isinstance(r, ScaleRequest)]
        groups = list(dict.fromkeys(r.group for r in requests))
        if any(op.counts.get(group) is None for group in groups):
            op.detail = " then ".join(str(r) for r in requests)
            return
        parts = []
        for group in groups:
            before = after = op.counts[group]
            for request in requests:
                if request.group == group:
                    after = request.target.apply(after)
            parts.append(f"{group + ' ' if group else ''}{before} → {after}")
        op.detail = ", ".join(parts)

    def _note_count(self, op: Operation, group: str | None) -> None:
        """Keep the stored count of `group` last seen, for `2 → 3` (display only)."""
        if group in op.counts:
            return
        snapshot = self._app.snapshot
        summary = snapshot.summary(op.cluster) if snapshot is not None else None
        desired = summary.desired if summary is not None else None
        if desired is None:
            return
        spec = desired.spec
        if group is None and len(spec.groups) == 1:
            op.counts[None] = spec.group(spec.group_names[0]).count
        elif group is not None and group in spec.groups:
            op.counts[group] = spec.group(group).count

    def _refused_while_deleting(self, cluster: str, kind: Kind) -> bool:
        if (cluster, "delete") not in self._running:
            return False
        self._app.notify(f"{cluster} is being deleted: not {VERBS[kind]} it.", severity="warning")
        return True

    def _services(self) -> Services | None:
        services = self._app.services
        if services is None:
            self._app.notify("Not connected to a workspace yet.", severity="warning")
        return services

    def _require_services(self) -> Services:
        services = self._app.services
        assert services is not None  # requests are refused before the app is connected
        return services

    def _progress(self, op: Operation) -> ProgressCallback:
        def progress(step: Progress) -> None:
            self._app.add_event(Event(time.time(), op.cluster, step.message, step.level))
            self._app.broadcast(OperationChanged, op, step)

        return progress

    def _event(self, cluster: str, text: str, level: Level = "info", notify: bool = False) -> None:
        self._app.add_event(Event(time.time(), cluster, text, level), notify=notify)

    def _changed(self, op: Operation) -> None:
        self._app.broadcast(OperationChanged, op)
