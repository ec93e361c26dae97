"""ClusterManager: create, scale, heal and tear down clusters; every operation is idempotent.

Each operation first records the desired state (cluster.json), then reconciles it with the
applications that exist (one list call): `plan.py` decides the actions from that state alone,
and the manager carries them out under one error policy (`_execute`: every action done is
reported, even when another fails; ActionsFailed then says what was done and what failed).
Rerunning after an interruption converges without duplicates: a node's subdomain is derived
from the project, cluster and node, so the workspace itself refuses a second application for
the same node. The value types live in `types.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

from raycai_core.cluster import phases
from raycai_core.cluster.apps import APP_FILTER, ClusterApp, group_by_cluster
from raycai_core.cluster.autoscaler import autoscaler_keeps, bounds_note
from raycai_core.cluster.desired import DesiredState, read_desired, write_desired
from raycai_core.cluster.drain import (
    DRAIN_SLACK_S,
    clear_drain_request,
    drain_end,
    request_drain,
)
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.lock import ClusterLocked, cluster_lock
from raycai_core.cluster.observe import Observer
from raycai_core.cluster.plan import (
    ScalePlan,
    check_sizes_unchanged,
    group_targets,
    heal_actions,
    plan_down,
    plan_scale,
    plan_token_restart,
    plan_up,
    scaled_spec,
)
from raycai_core.cluster.readiness import progress_line, watch_until_ready
from raycai_core.cluster.records import (
    HeadAddress,
    NodeRecord,
    read_head_address,
    read_node_record,
    read_node_records,
)
from raycai_core.cluster.rolling_state import update_status
from raycai_core.cluster.types import (
    PAST,
    Action,
    ActionDone,
    ActionFailure,
    ActionsFailed,
    ClusterError,
    ClusterNotFound,
    ClusterSummary,
    ClusterTimeout,
    GroupNotGiven,
    HealAction,
    Level,
    NodeFailed,
    Progress,
    ProgressCallback,
    ScaleResult,
    ScaleTarget,
    WorkersBusy,
)
from raycai_core.cluster.view import ClusterView
from raycai_core.cml.client import CMLClient
from raycai_core.cml.models import AppStatus, CreateApplication
from raycai_core.launcher.autoscaling import autoscaler_files
from raycai_core.launcher.render import head_programs, render_cluster
from raycai_core.naming import (
    HEAD_NODE,
    app_environment,
    app_name,
    description,
    node_group,
    subdomain,
)
from raycai_core.spec import ClusterSpec, NodeSpec

# The value types callers use with the manager (defined in types.py).
__all__ = [
    "ActionsFailed",
    "ClusterError",
    "ClusterManager",
    "ClusterNotFound",
    "ClusterSummary",
    "ClusterTimeout",
    "GroupNotGiven",
    "HealAction",
    "NodeFailed",
    "Progress",
    "ProgressCallback",
    "ScaleResult",
    "ScaleTarget",
    "WorkersBusy",
    "summarise",
]

Act = Callable[[Action], Awaitable[ActionDone | None]]
VERBS = {"create": "creating", "restart": "restarting", "delete": "deleting"}


class ClusterManager:
    """Cluster operations against one project (a CMLClient and the project's directory)."""

    def __init__(
        self,
        cml: CMLClient,
        project_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        observer: Observer | None = None,
        file_poll_s: float = 0.1,
        api_poll_s: float = 1.0,
        create_concurrency: int = 32,
    ) -> None:
        self.cml = cml
        self.project_dir = Path(project_dir)
        self._progress = progress
        self.observer = observer or Observer(cml, self.project_dir)
        self.file_poll_s = file_poll_s
        self.api_poll_s = api_poll_s
        self._create_slots = asyncio.Semaphore(create_concurrency)

    # -- helpers -----------------------------------------------------------------------

    def paths(self, name: str) -> ClusterPaths:
        return ClusterPaths(self.project_dir, name)

    def report(
        self,
        step: str,
        message: str,
        done: int | None = None,
        total: int | None = None,
        level: Level = "info",
    ) -> None:
        if self._progress is not None:
            self._progress(Progress(step, message, done, total, level))

    async def members(self, name: str) -> list[ClusterApp]:
        apps = await self.cml.list_applications(APP_FILTER)
        return group_by_cluster(apps).get(name, [])

    def _request(self, spec: ClusterSpec, node: str) -> CreateApplication:
        """The application of `node`: the head's sizes, or its worker group's (sizes, runtime,
        accelerator label); the head-side provider builds the same request."""
        paths = self.paths(spec.name)
        if node == HEAD_NODE:
            role, what = "head", "the head"
            sizes: NodeSpec = spec.head
            label_id = ""
        else:
            group = node_group(node)
            if group is None:
                raise ClusterError(f"{node!r} is not a node of cluster {spec.name}")
            if group not in spec.groups:
                raise ClusterError(
                    f"cluster {spec.name} has no worker group {group!r} "
                    f"(its groups: {', '.join(spec.group_names)})"
                )
            role, what = "worker", f"worker group {group}"
            worker = spec.group(group)
            sizes, label_id = worker, worker.accelerator_label_id
        if not sizes.runtime_identifier:
            raise ClusterError(f"no runtime for {what}: set one with --runtime")
        return CreateApplication(
            name=app_name(spec.name, node),
            subdomain=subdomain(self.cml.project_id, spec.name, node),
            description=description(spec.name, node),
            script=paths.script_relative(role),
            cpu=sizes.cpu,
            memory=sizes.memory,
            nvidia_gpu=sizes.nvidia_gpu,
            environment=app_environment(spec.name, node),
            runtime_identifier=sizes.runtime_identifier,
            bypass_authentication=False,
            accelerator_label_id=label_id,
        )

    def _write_spec(self, spec: ClusterSpec, state: DesiredState = "active") -> None:
        """Record the desired state, then (re)write the launchers and their config."""
        write_desired(self.paths(spec.name), spec, state)
        if state == "active":
            render_cluster(self.project_dir, spec)

    # The project's files: on disk here; RemoteClusterManager (cluster/remote.py) also
    # keeps them in the project through the files API.

    async def _store(self, spec: ClusterSpec, state: DesiredState = "active") -> None:
        await asyncio.to_thread(self._write_spec, spec, state)

    async def _forget_head(self, paths: ClusterPaths) -> None:
        """A head.json left by an earlier head would point workers at a dead address."""
        await asyncio.to_thread(paths.head_json.unlink, missing_ok=True)

    async def _remove_files(self, paths: ClusterPaths) -> None:
        await asyncio.to_thread(_remove_cluster_files, paths)

    async def _create(self, spec: ClusterSpec, node: str) -> ClusterApp:
        request = self._request(spec, node)
        script = self.project_dir / request.script
        if not await asyncio.to_thread(script.is_file):
            raise ClusterError(
                f"the launcher script {request.script} is missing; raycai writes it "
                f"(rerun `raycai up {spec.name}` to write it again)"
            )
        # A drain request left for an earlier node of this name must not drain the new one.
        await asyncio.to_thread(clear_drain_request, self.paths(spec.name), node)
        async with self._create_slots:
            app = await self.cml.create_application(request)
        return ClusterApp(app=app, cluster=spec.name, node=node)

    # -- carrying out a plan: the one error policy ---------------------------------------

    async def _execute(
        self,
        operation: str,
        name: str,
        actions: Sequence[Action],
        act: Act,
        *,
        step: str,
        level: Level = "info",
        sequential: bool = False,
        counted: bool = False,
        say: Callable[[ActionDone], str] = str,
        resume: str = "",
    ) -> list[ActionDone]:
        """Carry out `actions`, all at once or (`sequential`) in order until one fails.

        Each action done is reported as it completes, each failure too (level error); once
        every action started has ended, ActionsFailed carries what was done, what failed (with
        its cause) and what was not attempted. A cancellation is never turned into an error.
        `act` returns None for an action that found nothing to do."""
        done: list[ActionDone] = []
        failed: list[ActionFailure] = []
        skipped: list[Action] = []
        total = len(actions) if counted else None

        async def one(action: Action) -> bool:
            try:
                result = await act(action)
            except Exception as exc:
                failed.append(ActionFailure(action, exc))
                self.report(step, f"{action.node}: {action.kind} failed: {exc}", level="error")
                return False
            if result is not None:
                done.append(result)
                self.report(step, say(result), len(done) if counted else None, total, level)
            return True

        if sequential:
            for index, action in enumerate(actions):
                if not await one(action):
                    skipped = list(actions[index + 1 :])
                    break
        else:
            await asyncio.gather(*(one(action) for action in actions))
        if failed:
            raise ActionsFailed(operation, name, done, failed, skipped, resume)
        return done

    async def _act(
        self,
        name: str,
        action: Action,
        spec: ClusterSpec | None = None,
        drain_timeout: float = 0.0,
    ) -> ActionDone | None:
        """One action against the API (and the project's files)."""
        if action.kind == "create":
            assert spec is not None
            member = await self._create(spec, action.node)
            return ActionDone(action, "created", f"application {member.app.name}", member)
        if action.kind == "resume":
            # The launcher rejoins when its request goes; without one it rejoins by itself.
            if not await asyncio.to_thread(clear_drain_request, self.paths(name), action.node):
                return None
            return ActionDone(action, "resumed")
        member = action.app
        assert member is not None
        if action.kind == "restart":
            app = await self.cml.restart_application(member.app.id)
            restarted = ClusterApp(app=app, cluster=member.cluster, node=member.node)
            return ActionDone(action, "restarted", f"was {member.app.status.value}", restarted)
        if action.kind == "remove":
            await self._drain(name, action, drain_timeout)
        await self.cml.delete_application(member.app.id)
        return ActionDone(action, PAST[action.kind], f"application {member.app.name}")

    # -- create --------------------------------------------------------------------------

    async def up(
        self, spec: ClusterSpec, *, wait: bool = True, timeout: float | None = 900.0
    ) -> ClusterView:
        """Create the cluster, or converge an existing one to `spec`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        paths = self.paths(spec.name)
        # An existing cluster's state changes under its lock (a scale or down may run); a new
        # one has no other writer (scale and down need its cluster.json), and the workspace
        # refuses a second application for the same node.
        exists = await asyncio.to_thread(paths.cluster_json.is_file)
        async with self.lock(spec.name) if exists else contextlib.nullcontext():
            head = await self._up_apps(spec, paths)
        address = await self._wait_head(spec, head, deadline)
        self.report(
            "head-ready",
            f"head ready: GCS {address.gcs_address}, dashboard {address.dashboard_url}",
        )
        if wait:
            return await self.wait_ready(spec.name, deadline=deadline)
        return await self.observer.observe(spec.name)

    async def _up_apps(self, spec: ClusterSpec, paths: ClusterPaths) -> ClusterApp:
        """up's changes: the desired state, the launchers, and every missing application."""
        previous = await asyncio.to_thread(read_desired, paths)
        if previous is not None and previous.state == "deleting":
            raise ClusterError(
                f"cluster {spec.name!r} is being deleted; finish with `raycai down {spec.name}` "
                "before creating it again"
            )
        members = await self.members(spec.name)
        check_sizes_unchanged(previous, spec, members)
        token_lost = bool(members) and not await asyncio.to_thread(paths.auth_token.exists)
        await self._store(spec)
        self.report("scripts", f"launcher scripts written to {paths.relative}/")
        act = partial(self._act, spec.name, spec=spec)
        if token_lost:
            # Running nodes hold a token nobody has any more: restart them with the new one.
            self.report(
                "restart",
                "the cluster's Ray token file was gone: restarting its nodes with a new token",
                level="warning",
            )
            await self._forget_head(paths)
            for restarts in plan_token_restart(members):
                await self._execute("up", spec.name, restarts, act, step="restart")
            members = await self.members(spec.name)

        # Every missing application at once, the head's request first: the pods are then
        # scheduled together instead of one start delay after the other, and the worker
        # launchers wait for the head's published address by themselves. A stale head.json
        # goes before any worker exists, so none joins a dead head.
        plan = plan_up(spec, members)
        head = next((m for m in members if m.node == HEAD_NODE), None)
        if plan.head is None:
            assert head is not None
            self.report(
                "head-created", f"head application {head.app.name} exists ({head.app.status.value})"
            )
        else:
            # A head.json left by an earlier head would point workers at a dead address.
            await self._forget_head(paths)
            (done,) = await self._execute(
                "up", spec.name, [plan.head], act, step="head-created", say=_said_of_head
            )
            head = done.app
        assert head is not None
        if plan.workers:
            counts = Counter(action.kind for action in plan.workers)  # creates first
            said = ", ".join(f"{VERBS[kind]} {n}" for kind, n in counts.items())
            total = len(plan.workers)
            self.report("workers-create", f"{said} worker application(s)", 0, total)
            await self._execute(
                "up", spec.name, plan.workers, act, step="workers-create", counted=True
            )
        return head

    async def _wait_head(
        self, spec: ClusterSpec, head: ClusterApp, deadline: float | None
    ) -> HeadAddress:
        paths = self.paths(spec.name)
        self.report("head-wait", "waiting for the head to publish its address")
        next_api = time.monotonic() + self.api_poll_s
        last_reason = ""
        while True:
            # The project directory may be a network mount: read it off the event loop.
            address, record = await asyncio.to_thread(_head_files, paths)
            if address is not None and await _tcp_accepts(address.ip, address.gcs_port):
                return address
            if record is not None and record.phase == "failed":
                raise NodeFailed(
                    f"the head failed: {record.error or 'see its log'} "
                    f"(log: {paths.node_log(HEAD_NODE)})"
                )
            if time.monotonic() >= next_api:
                next_api = time.monotonic() + self.api_poll_s
                app = await self.cml.get_application(head.app.id)
                reason = _head_wait_reason(app.status, record.phase if record else None)
                if app.status is AppStatus.STARTING:  # unscheduled for long: say the quota
                    view = await self.observer.observe(spec.name, with_ray=False)
                    reason = view.schedule_note or reason
                if reason != last_reason:
                    self.report("head-wait", reason)
                    last_reason = reason
            _check_deadline(deadline, f"the head did not publish its address ({last_reason})")
            await asyncio.sleep(self.file_poll_s)

    async def wait_ready(
        self, name: str, *, deadline: float | None = None, timeout: float | None = None
    ) -> ClusterView:
        """Wait until the cluster is ready (`ClusterView.ready`: every node joined and Ray
        answered), by the one watch the TUI's create form uses too."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        last = ""
        interval = max(self.file_poll_s, 0.25)
        async with contextlib.aclosing(
            watch_until_ready(self.observer, name, interval=interval)
        ) as views:
            async for view in views:
                line = progress_line(view)
                if line != last:
                    self.report("joined", line, view.nodes_joined, view.nodes_wanted)
                    last = line
                if view.ready:
                    return view
                row = view.failed_row
                if row is not None:
                    raise NodeFailed(
                        f"{row.node} failed: {row.record.error if row.record else ''} "
                        f"(log: {self.paths(name).node_log(row.node)})"
                    )
                _check_deadline(deadline, view.not_ready_reason or "not ready")
        raise ClusterError(f"{name}: the readiness watch ended before the cluster was ready")

    # -- scale ---------------------------------------------------------------------------

    def lock(self, name: str, *, wait: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        """The cluster's exclusive lock (scale, heal and the state change of down)."""
        return cluster_lock(
            self.paths(name),
            wait=wait,
            on_wait=lambda: self.report(
                "lock", f"waiting for another operation on {name} to finish"
            ),
        )

    async def scale(
        self,
        name: str,
        target: ScaleTarget | int | Mapping[str, ScaleTarget | int],
        *,
        wait: bool = False,
        timeout: float | None = 600.0,
        drain_timeout: float = 60.0,
        allow_busy: bool = True,
    ) -> ScaleResult:
        """Set (`3`, a plain int) or change (`ScaleTarget(delta=+1)`) the number of workers:
        of the cluster's one group, or of each group named in `{group: target}` (several
        groups at once, in one locked update of the desired state).

        Each new count is computed from cluster.json under the cluster's lock, never from
        what a caller last saw, so concurrent scales add up. Within each group, workers go
        in the order failed, not joined, idle, busy (highest index first); each one that is
        part of Ray is drained first (Ray schedules nothing new there; running tasks get
        `drain_timeout` seconds), then its application is deleted. With `allow_busy=False`,
        WorkersBusy is raised before anything changes when a busy worker would go. When some
        workers could not be added or removed, ActionsFailed says which were and which were
        not (the new counts stay stored: rerunning with those counts finishes).
        """
        targets = _as_targets(target)
        if not drain_timeout >= 0:
            raise ClusterError(f"the drain timeout must be 0 s or more, not {drain_timeout}")
        paths = self.paths(name)
        if await asyncio.to_thread(read_desired, paths) is None:
            raise ClusterNotFound(
                f"no cluster named {name!r} in this project (`raycai list` shows them)"
            )
        moved = await self._move_autoscaler_bounds(name, targets)
        if moved is not None:
            if wait:
                await self.wait_ready(name, timeout=timeout)
            return moved
        async with self.lock(name):
            desired = await asyncio.to_thread(read_desired, paths)
            if desired is None:
                raise ClusterNotFound(f"cluster {name!r} was deleted meanwhile")
            if desired.state == "deleting":
                raise ClusterError(f"cluster {name!r} is being deleted")
            if desired.state == "suspended":  # storing a count would mark it active
                raise ClusterError(
                    f"cluster {name!r} is suspended: `raycai resume {name}` first, then scale"
                )
            requested = group_targets(desired.spec, targets)  # unknown groups: refused now
            view = await self.observer.observe(name)
            plan = plan_scale(desired, targets, view.worker_rows)
            if plan.busy and not allow_busy:
                raise WorkersBusy(plan.busy)
            await self._store(plan.spec)
            for group, (before, after) in plan.groups.items():
                what = _workers_of(desired.spec, group)
                self.report(
                    "scale", f"{name}: {what} {before} -> {after} (requested {requested[group]})"
                )
            act = partial(self._act, name, spec=plan.spec, drain_timeout=drain_timeout)
            stored = (
                f"{plan.after} worker(s) are stored"
                if len(plan.spec.groups) == 1
                else "the new counts are stored"
            )
            resume = (
                f"{stored}; `raycai scale {name} {_counts_arg(plan)}` finishes, "
                "nothing is duplicated"
            )
            if plan.create:
                nodes = [a.node for a in plan.create]
                self.report("scale", f"adding {len(nodes)} worker(s): {', '.join(nodes)}")
            if plan.remove:
                chosen = ", ".join(f"{a.node} ({a.reason})" for a in plan.remove)
                self.report("scale", f"removing {chosen}")
            if not plan.create and not plan.remove:
                self.report("scale", f"{name} already has {_counts_text(plan)}")
            # Creations and removals (each drained first) of every group, all at once.
            done = await self._execute(
                "scale", name, plan.create + plan.remove, act, step="scale", resume=resume
            )
            created = {d.node for d in done if d.action.kind == "create"}
            added = [a.node for a in plan.create if a.node in created]
            removed = [a.node for a in plan.remove]  # all of them, in removal order
            await asyncio.to_thread(_cancel_drains, paths, plan.keep)
        if wait:
            await self.wait_ready(name, timeout=timeout)
        return ScaleResult(
            before=plan.before, after=plan.after, added=added, removed=removed, groups=plan.groups
        )

    async def _move_autoscaler_bounds(
        self, name: str, targets: ScaleTarget | Mapping[str, ScaleTarget]
    ) -> ScaleResult | None:
        """With the cluster's autoscaler running, a scale moves each named group's min (and
        its max when it must) in cluster.json and autoscaler.json (rendered with the
        launchers), and the autoscaler adds or removes the workers; None when raycai scales."""
        paths = self.paths(name)
        async with self.lock(name):
            desired = await asyncio.to_thread(read_desired, paths)
            if not await asyncio.to_thread(autoscaler_keeps, paths, desired):
                return None
            assert desired is not None
            chosen = group_targets(desired.spec, targets)
            new = scaled_spec(desired.spec, chosen)
            await self._store(new)
            several = len(desired.spec.groups) > 1
            counts: dict[str, tuple[int, int]] = {}
            for group in chosen:
                old_group, new_group = desired.spec.group(group), new.group(group)
                counts[group] = (old_group.count, new_group.count)
                note = bounds_note(old_group.min, old_group.max, new_group.min, new_group.max)
                self.report("scale", f"group {group}: {note}" if several else note)
            return ScaleResult(
                before=sum(b for b, _ in counts.values()),
                after=sum(a for _, a in counts.values()),
                added=[],
                removed=[],
                groups=counts,
            )

    async def _drain(self, name: str, action: Action, drain_timeout: float) -> None:
        """Ask the worker's launcher to drain its Ray node; wait until it did (bounded)."""
        paths = self.paths(name)
        node = action.node
        if action.note:
            self.report("drain", f"{node}: {action.note}", level="warning")
        if action.drain_id is None:
            return
        await asyncio.to_thread(
            request_drain,
            paths,
            node,
            action.drain_id,
            drain_timeout,
            f"raycai: scale-down of {name}",
        )
        self.report(
            "drain",
            f"{node}: draining (Ray schedules nothing new there; running tasks have "
            f"{drain_timeout:g} s to finish)",
        )
        deadline = time.monotonic() + drain_timeout + DRAIN_SLACK_S
        while True:
            record = await asyncio.to_thread(read_node_record, paths, node)
            end = drain_end(record, time.time())
            if end == "drained":
                detail = record.detail if record and record.detail else "Ray stopped"
                self.report("drain", f"{node}: drained ({detail})")
                return
            if end == "gone":
                phase = record.phase if record else "no record"
                self.report("drain", f"{node}: not part of Ray any more ({phase})")
                return
            if time.monotonic() >= deadline:
                self.report(
                    "drain",
                    f"{node}: no drain within {drain_timeout + DRAIN_SLACK_S:g} s "
                    f"(launcher phase {record.phase if record else '-'}); removing it anyway",
                    level="warning",
                )
                return
            await asyncio.sleep(max(self.file_poll_s, 0.25))

    # -- heal ----------------------------------------------------------------------------

    async def heal(self, name: str, view: ClusterView | None = None) -> list[HealAction]:
        """Restart failed, stopped or silent nodes, recreate missing workers and resume
        workers drained by an unfinished scale-down (raycai_core.cluster.healing decides).

        One action after the other, each reported as it is done; at the first failure,
        ActionsFailed lists the actions taken before it, the failure and what was left.
        Does nothing while another operation holds the cluster's lock (it will converge)."""
        paths = self.paths(name)
        if not await asyncio.to_thread(paths.cluster_json.is_file):
            return []
        try:
            async with self.lock(name, wait=False):
                desired = await asyncio.to_thread(read_desired, paths)
                if desired is None or desired.state != "active":
                    return []
                view = view or await self.observer.observe(name)
                actions = heal_actions(view, desired, time.time())
                done = await self._execute(
                    "heal",
                    name,
                    actions,
                    partial(self._act, name, spec=desired.spec),
                    step="heal",
                    level="warning",
                    sequential=True,
                    say=lambda d: _said_of_heal(HealAction.of(d)),
                    resume="the next heal goes on from there",
                )
        except ClusterLocked:
            self.report("heal", f"{name}: another operation is running; not healing now")
            return []
        return [HealAction.of(d) for d in done]

    # -- teardown ------------------------------------------------------------------------

    async def down(self, name: str, *, timeout: float = 300.0) -> list[str]:
        """Delete every application of the cluster and its files (logs are kept).

        Safe to rerun: it first marks the cluster `deleting` so nothing recreates it.
        Returns the names of the applications deleted by this call; when some could not be
        deleted, ActionsFailed says which were and which were not (the files stay).
        """
        paths = self.paths(name)
        if await asyncio.to_thread(read_desired, paths) is not None:
            async with self.lock(name):  # a scale in progress must not write `active` back
                desired = await asyncio.to_thread(read_desired, paths)
                if desired is not None:
                    await self._store(desired.spec, "deleting")
        members = await self.members(name)
        if members:
            self.report("delete", f"deleting {len(members)} application(s)", 0, len(members))
        await self._execute(
            "down",
            name,
            plan_down(members),
            partial(self._act, name),
            step="delete",
            counted=True,
            say=_said_of_delete,
            resume=f"{name} stays marked for deletion; `raycai down {name}` finishes",
        )
        deadline = time.monotonic() + timeout
        while await self.members(name):
            _check_deadline(deadline, "applications are still listed after delete; rerun down")
            await asyncio.sleep(self.api_poll_s)
        await self._remove_files(paths)
        self.report("delete", f"cluster {name} deleted (logs kept in {paths.relative}/logs)")
        return [m.app.name for m in members]

    # -- listing ------------------------------------------------------------------------

    async def list_clusters(self) -> list[ClusterSummary]:
        """Every cluster of the project, from the app list and the project files alone."""
        apps = await self.cml.list_applications(APP_FILTER)
        return await asyncio.to_thread(summarise, self.project_dir, group_by_cluster(apps))


def summarise(
    project_dir: Path, grouped: dict[str, list[ClusterApp]], now: float | None = None
) -> list[ClusterSummary]:
    """The list's view of each cluster: apps and project files, no Ray call (so `joined`
    is the launchers' word, by the same rule as the cluster view's)."""
    now = time.time() if now is None else now
    names = set(grouped) | set(cluster_names_on_disk(project_dir))
    summaries = []
    for name in sorted(names):
        paths = ClusterPaths(project_dir, name)
        try:
            desired = read_desired(paths)
        except Exception:  # a corrupt file must not hide the cluster's apps
            desired = None
        records = read_node_records(paths)
        members = grouped.get(name, [])
        joined = sum(
            1
            for m in members
            if m.node != HEAD_NODE
            and phases.node_joined(
                m.app.status is AppStatus.RUNNING, records.get(m.node), None, now
            )
        )
        update = update_status(paths)
        summaries.append(ClusterSummary(name, desired, members, joined, records, update))
    return summaries


def _as_targets(
    target: ScaleTarget | int | Mapping[str, ScaleTarget | int],
) -> ScaleTarget | dict[str, ScaleTarget]:
    """A bare target (the one group's) or `{group: target}`, ints as absolute counts."""

    def one(value: object) -> ScaleTarget:
        if isinstance(value, ScaleTarget):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return ScaleTarget(count=value)
        raise TypeError(f"scale target must be a ScaleTarget or an int, not {value!r}")

    if isinstance(target, Mapping):
        return {str(group): one(value) for group, value in target.items()}
    return one(target)


def _workers_of(spec: ClusterSpec, group: str) -> str:
    return f"group {group} workers" if len(spec.groups) > 1 else "workers"


def _counts_arg(plan: ScalePlan) -> str:
    """The `raycai scale` arguments that finish `plan` (`3`, or `cpu=3 gpu=1`)."""
    if len(plan.spec.groups) == 1:
        return str(plan.after)
    return " ".join(f"{group}={after}" for group, (_, after) in plan.groups.items())


def _counts_text(plan: ScalePlan) -> str:
    if len(plan.spec.groups) == 1:
        return f"{plan.after} worker(s)"
    return ", ".join(f"{after} worker(s) in group {g}" for g, (_, after) in plan.groups.items())


def _said_of_head(done: ActionDone) -> str:
    assert done.app is not None
    if done.action.kind == "create":
        return f"head application {done.app.app.name} created ({done.app.app.id})"
    return f"head application {done.app.app.name} restarted"


def _said_of_delete(done: ActionDone) -> str:
    assert done.action.app is not None
    return f"{done.action.app.app.name} deleted"


def _said_of_heal(action: HealAction) -> str:
    return f"{action.node}: {action.action} ({action.reason})"


def _cancel_drains(paths: ClusterPaths, nodes: Iterable[str]) -> None:
    """Drain requests of workers the cluster keeps (left by an interrupted scale-down)."""
    for node in nodes:
        clear_drain_request(paths, node)


def _head_wait_reason(status: AppStatus, phase: str | None) -> str:
    if status is AppStatus.STARTING and phase is None:
        return "head application STARTING: waiting for CML to schedule it (quota or capacity)"
    if status is AppStatus.FAILED:
        return "head application FAILED: the platform restarts it"
    if phase:
        return f"head launcher: {phase}"
    return f"head application {status.value}"


def _head_files(paths: ClusterPaths) -> tuple[HeadAddress | None, NodeRecord | None]:
    return read_head_address(paths), read_node_record(paths, HEAD_NODE)


def _check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise ClusterTimeout(
            f"timed out: {what}. Rerun the command to keep waiting; nothing is duplicated"
        )


async def _tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _remove_cluster_files(paths: ClusterPaths) -> None:
    for file in (
        paths.head_json,
        paths.launcher_json,
        paths.auth_token,
        paths.script("head"),
        paths.script("worker"),
        paths.cluster_json,
        paths.root / "rolling.json",  # a rolling update's record (cluster/rolling_state.py)
        *autoscaler_files(paths),
        *head_programs(paths),
    ):
        file.unlink(missing_ok=True)
    shutil.rmtree(paths.nodes_dir, ignore_errors=True)
    shutil.rmtree(paths.drain_dir, ignore_errors=True)
