"""Create, scale, heal and tear down clusters; every operation is idempotent.

Each operation first records the desired state (cluster.json), then reconciles it with the
applications that exist (one list call), so that rerunning after an interruption converges
without duplicates: a node's subdomain is derived from the project, cluster and node, so
the workspace itself refuses a second application for the same node.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from raycai_core.cluster import phases
from raycai_core.cluster.apps import APP_FILTER, ClusterApp, group_by_cluster
from raycai_core.cluster.autoscaler import autoscaler_keeps, bounds_note
from raycai_core.cluster.desired import Desired, DesiredState, read_desired, write_desired
from raycai_core.cluster.drain import (
    DRAIN_SLACK_S,
    clear_drain_request,
    drain_end,
    drain_node_id,
    request_drain,
)
from raycai_core.cluster.healing import HealStep, plan_heal
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.lock import ClusterLocked, cluster_lock
from raycai_core.cluster.observe import Observer
from raycai_core.cluster.readiness import progress_line, watch_until_ready
from raycai_core.cluster.records import (
    HeadAddress,
    NodeRecord,
    read_head_address,
    read_node_record,
    read_node_records,
)
from raycai_core.cluster.view import ClusterView, NodeRow
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLError
from raycai_core.cml.models import AppStatus, CreateApplication
from raycai_core.launcher.autoscaling import autoscaler_files
from raycai_core.launcher.render import render_cluster
from raycai_core.naming import (
    HEAD_NODE,
    app_environment,
    app_name,
    description,
    subdomain,
    worker_node,
)
from raycai_core.spec import ClusterSpec, NodeSpec

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Progress:
    """One step of a long operation, for the CLI and the TUI to render."""

    step: str
    message: str
    done: int | None = None
    total: int | None = None
    level: Level = "info"


ProgressCallback = Callable[[Progress], None]


class ClusterError(Exception):
    """An operation could not complete; the message says why and how to resume."""


class ClusterNotFound(ClusterError):
    pass


class ClusterTimeout(ClusterError):
    pass


class NodeFailed(ClusterError):
    pass


class WorkersBusy(ClusterError):
    """A scale-down would remove workers that run Ray work (raised before anything changed)."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        super().__init__(
            f"removing {', '.join(self.nodes)} would stop Ray work running there; "
            "confirm to drain them (running tasks get the drain timeout to finish)"
        )


@dataclass(frozen=True)
class ScaleTarget:
    """A requested worker count: absolute (`3`) or relative to the stored one (`+2`, `-1`)."""

    count: int | None = None
    delta: int | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.delta is None):
            raise ValueError("a scale target is either a count or a delta")
        if self.count is not None and self.count < 0:
            raise ValueError(f"the worker count must be at least 0, not {self.count}")

    @classmethod
    def parse(cls, text: str) -> ScaleTarget:
        """`3` -> count 3; `+2` / `-1` -> delta. ValueError with a clear message otherwise."""
        value = text.strip()
        sign, digits = (value[0], value[1:]) if value[:1] in ("+", "-") else ("", value)
        if not digits.isascii() or not digits.isdigit() or len(digits) > 6:
            raise ValueError(
                f"{text!r} is not a worker count: use N (e.g. 3) to set it, "
                "+K or -K (e.g. +2, -1) to change it"
            )
        number = int(digits)
        if sign == "+":
            return cls(delta=number)
        if sign == "-":
            return cls(delta=-number)
        return cls(count=number)

    def apply(self, current: int) -> int:
        """The new count for a cluster that has `current` (never below 0)."""
        if self.count is not None:
            return self.count
        return max(0, current + (self.delta or 0))

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.delta:+d}"


@dataclass(frozen=True)
class ScaleResult:
    before: int
    after: int
    added: list[str]
    removed: list[str]


@dataclass(frozen=True)
class HealAction:
    node: str
    action: Literal["restarted", "recreated", "resumed"]
    reason: str


@dataclass(frozen=True)
class ClusterSummary:
    name: str
    desired: Desired | None
    members: list[ClusterApp]
    joined_workers: int  # by phases.node_joined, from the launchers' records
    records: Mapping[str, NodeRecord] = field(default_factory=dict)

    @property
    def head(self) -> ClusterApp | None:
        return next((m for m in self.members if m.node == HEAD_NODE), None)

    @property
    def workers(self) -> list[ClusterApp]:
        return [m for m in self.members if m.node != HEAD_NODE]

    @property
    def workers_running(self) -> int:
        return sum(1 for m in self.workers if m.app.status is AppStatus.RUNNING)

    @property
    def desired_workers(self) -> int | None:
        return self.desired.spec.workers.count if self.desired else None

    def total(self, resource: Literal["cpu", "memory", "nvidia_gpu"]) -> float:
        return float(sum(getattr(m.app, resource) for m in self.members))

    @property
    def created_at(self) -> float | None:
        if self.desired and self.desired.created_at:
            return self.desired.created_at
        head = self.head
        if head and head.app.created_at:
            return head.app.created_at.timestamp()
        return None


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
        paths = self.paths(spec.name)
        role = "head" if node == HEAD_NODE else "worker"
        sizes: NodeSpec = spec.head if node == HEAD_NODE else spec.workers
        if not sizes.runtime_identifier:
            raise ClusterError(f"no runtime for the {role}: set one with --runtime")
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
        )

    def _write_spec(self, spec: ClusterSpec, state: DesiredState = "active") -> None:
        """Record the desired state, then (re)write the launchers and their config."""
        write_desired(self.paths(spec.name), spec, state)
        if state == "active":
            render_cluster(self.project_dir, spec)

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
        _check_sizes_unchanged(previous, spec, members)
        token_lost = bool(members) and not await asyncio.to_thread(paths.auth_token.exists)
        await asyncio.to_thread(self._write_spec, spec)
        self.report("scripts", f"launcher scripts written to {paths.relative}/")
        if token_lost:
            # Running nodes hold a token nobody has any more: restart them with the new one.
            self.report(
                "restart",
                "the cluster's Ray token file was gone: restarting its nodes with a new token",
                level="warning",
            )
            await asyncio.to_thread(paths.head_json.unlink, missing_ok=True)
            await asyncio.gather(*(self._restart(m) for m in members if m.node == HEAD_NODE))
            await asyncio.gather(*(self._restart(m) for m in members if m.node != HEAD_NODE))
            members = await self.members(spec.name)

        # Every missing application at once, the head's request first: the pods are then
        # scheduled together instead of one start delay after the other, and the worker
        # launchers wait for the head's published address by themselves. _ensure_head
        # removes a stale head.json before any worker exists, so none joins a dead head.
        head = next((m for m in members if m.node == HEAD_NODE), None)
        head = await self._ensure_head(spec, head)
        workers = [m for m in members if m.node != HEAD_NODE]
        await self._converge_workers(spec, workers)
        return head

    async def _ensure_head(self, spec: ClusterSpec, head: ClusterApp | None) -> ClusterApp:
        paths = self.paths(spec.name)
        if head is None:
            # A head.json left by an earlier head would point workers at a dead address.
            await asyncio.to_thread(paths.head_json.unlink, missing_ok=True)
            head = await self._create(spec, HEAD_NODE)
            self.report("head-created", f"head application {head.app.name} created ({head.app.id})")
        elif head.app.status in (AppStatus.STOPPED, AppStatus.FAILED):
            await asyncio.to_thread(paths.head_json.unlink, missing_ok=True)
            app = await self.cml.restart_application(head.app.id)
            head = ClusterApp(app=app, cluster=spec.name, node=HEAD_NODE)
            self.report("head-created", f"head application {head.app.name} restarted")
        else:
            self.report(
                "head-created", f"head application {head.app.name} exists ({head.app.status.value})"
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
                if reason != last_reason:
                    self.report("head-wait", reason)
                    last_reason = reason
            _check_deadline(deadline, f"the head did not publish its address ({last_reason})")
            await asyncio.sleep(self.file_poll_s)

    async def _converge_workers(self, spec: ClusterSpec, workers: list[ClusterApp]) -> None:
        wanted = spec.workers.count
        existing = {m.node: m for m in workers}
        restart = [m for m in workers if m.app.status in (AppStatus.STOPPED, AppStatus.FAILED)]
        missing = _missing_nodes(existing, wanted)
        # Workers the cluster's autoscaler added (up to its max) are its business.
        extra = _pick_extra_by_index(
            workers, spec.workers.max if spec.workers.autoscale else wanted
        )
        total = len(missing)
        if missing:
            self.report("workers-create", f"creating {total} worker application(s)", 0, total)
        done = 0
        errors: list[str] = []

        async def create(node: str) -> None:
            nonlocal done
            try:
                await self._create(spec, node)
            except CMLError as exc:
                errors.append(f"{node}: {exc}")
                return
            done += 1
            self.report("workers-create", f"worker {node} created", done, total)

        await asyncio.gather(
            *(create(node) for node in missing),
            *(self._restart(m) for m in restart if m not in extra),
            *(self._delete(m) for m in extra),
        )
        if errors:
            raise ClusterError(
                f"{len(errors)} of {total} worker(s) could not be created (rerun the command "
                "to resume; nothing is duplicated):\n  " + "\n  ".join(errors)
            )

    async def _restart(self, member: ClusterApp) -> None:
        await self.cml.restart_application(member.app.id)
        self.report(
            "restart", f"{member.node}: application restarted (was {member.app.status.value})"
        )

    async def _delete(self, member: ClusterApp) -> None:
        await self.cml.delete_application(member.app.id)
        self.report("delete", f"{member.node}: application {member.app.name} deleted")

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
        target: ScaleTarget | int,
        *,
        wait: bool = False,
        timeout: float | None = 600.0,
        drain_timeout: float = 60.0,
        allow_busy: bool = True,
    ) -> ScaleResult:
        """Set (`3`, a plain int) or change (`ScaleTarget(delta=+1)`) the number of workers.

        The new count is computed from cluster.json under the cluster's lock, never from what
        a caller last saw, so concurrent scales add up. Workers go in the order failed, not
        joined, idle, busy (highest index first); each one that is part of Ray is drained
        first (Ray schedules nothing new there; running tasks get `drain_timeout` seconds),
        then its application is deleted. With `allow_busy=False`, WorkersBusy is raised
        before anything changes when a busy worker would go.
        """
        if isinstance(target, bool) or not isinstance(target, (int, ScaleTarget)):
            raise TypeError(f"scale target must be a ScaleTarget or an int, not {target!r}")
        target = ScaleTarget(count=target) if isinstance(target, int) else target
        if not drain_timeout >= 0:
            raise ClusterError(f"the drain timeout must be 0 s or more, not {drain_timeout}")
        paths = self.paths(name)
        if await asyncio.to_thread(read_desired, paths) is None:
            raise ClusterNotFound(
                f"no cluster named {name!r} in this project (`raycai list` shows them)"
            )
        moved = await self._move_autoscaler_bounds(name, target)
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
            before = desired.spec.workers.count
            count = target.apply(before)
            view = await self.observer.observe(name)
            workers = view.worker_rows
            chosen = removal_order(workers)[: max(0, len(workers) - count)]
            busy = [row.node for row in chosen if _removal_tier(row) == BUSY]
            if busy and not allow_busy:
                raise WorkersBusy(busy)
            spec = desired.spec.with_workers(count)
            await asyncio.to_thread(self._write_spec, spec)
            self.report("scale", f"{name}: workers {before} -> {count} (requested {target})")
            added: list[str] = []
            removed: list[str] = []
            if len(workers) < count:
                added = await self._add_workers(spec, workers, count)
            elif chosen:
                removed = await self._remove_workers(name, chosen, drain_timeout)
            else:
                self.report("scale", f"{name} already has {count} worker(s)")
            kept = [row.node for row in workers if row.node not in removed]
            await asyncio.to_thread(_cancel_drains, paths, kept)
        if wait:
            await self.wait_ready(name, timeout=timeout)
        return ScaleResult(before=before, after=count, added=added, removed=removed)

    async def _move_autoscaler_bounds(self, name: str, target: ScaleTarget) -> ScaleResult | None:
        """With the cluster's autoscaler running, a scale moves its min (and its max when it
        must) and the autoscaler adds or removes the workers; None when raycai scales."""
        paths = self.paths(name)
        async with self.lock(name):
            desired = await asyncio.to_thread(read_desired, paths)
            if not await asyncio.to_thread(autoscaler_keeps, paths, desired):
                return None
            assert desired is not None
            old = desired.spec.workers
            count = target.apply(old.count)
            new = desired.spec.with_workers(count)
            await asyncio.to_thread(self._write_spec, new)
            self.report("scale", bounds_note(old.min, old.max, new.workers.min, new.workers.max))
            return ScaleResult(before=old.count, after=count, added=[], removed=[])

    async def _add_workers(
        self, spec: ClusterSpec, workers: list[NodeRow], count: int
    ) -> list[str]:
        existing = {row.node: row.app for row in workers}
        nodes = _missing_nodes(existing, count)
        self.report("scale", f"adding {len(nodes)} worker(s): {', '.join(nodes)}")
        created = await asyncio.gather(
            *(self._create(spec, node) for node in nodes), return_exceptions=True
        )
        outcomes = list(zip(nodes, created, strict=True))
        errors = [f"{n}: {r}" for n, r in outcomes if isinstance(r, Exception)]
        if errors:
            raise ClusterError(
                "some workers could not be created (rerun to resume):\n  " + "\n  ".join(errors)
            )
        return nodes

    async def _remove_workers(
        self, name: str, chosen: list[NodeRow], drain_timeout: float
    ) -> list[str]:
        self.report(
            "scale", "removing " + ", ".join(f"{r.node} ({_removal_reason(r)})" for r in chosen)
        )

        async def remove(row: NodeRow) -> None:
            if row.joined:
                await self._drain(name, row, drain_timeout)
            if row.app is not None:
                await self._delete(row.app)

        results = await asyncio.gather(*(remove(row) for row in chosen), return_exceptions=True)
        errors = [f"{r.node}: {e}" for r, e in zip(chosen, results, strict=True) if e is not None]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled: do not hide it behind a ClusterError
        if errors:
            raise ClusterError(
                "some workers could not be removed (rerun to resume):\n  " + "\n  ".join(errors)
            )
        return [row.node for row in chosen]

    async def _drain(self, name: str, row: NodeRow, drain_timeout: float) -> None:
        """Ask the worker's launcher to drain its Ray node; wait until it did (bounded)."""
        paths = self.paths(name)
        ray_id = drain_node_id(row.record, row.ray.node_id if row.ray else None)
        if ray_id is None:
            why = "its launcher cannot drain" if row.record else "it has no launcher record"
            self.report("drain", f"{row.node}: not drained ({why}); removing it", level="warning")
            return
        await asyncio.to_thread(
            request_drain, paths, row.node, ray_id, drain_timeout, f"raycai: scale-down of {name}"
        )
        self.report(
            "drain",
            f"{row.node}: draining (Ray schedules nothing new there; running tasks have "
            f"{drain_timeout:g} s to finish)",
        )
        deadline = time.monotonic() + drain_timeout + DRAIN_SLACK_S
        while True:
            record = await asyncio.to_thread(read_node_record, paths, row.node)
            end = drain_end(record, time.time())
            if end == "drained":
                detail = record.detail if record and record.detail else "Ray stopped"
                self.report("drain", f"{row.node}: drained ({detail})")
                return
            if end == "gone":
                phase = record.phase if record else "no record"
                self.report("drain", f"{row.node}: not part of Ray any more ({phase})")
                return
            if time.monotonic() >= deadline:
                self.report(
                    "drain",
                    f"{row.node}: no drain within {drain_timeout + DRAIN_SLACK_S:g} s "
                    f"(launcher phase {record.phase if record else '-'}); removing it anyway",
                    level="warning",
                )
                return
            await asyncio.sleep(max(self.file_poll_s, 0.25))

    # -- heal ----------------------------------------------------------------------------

    async def heal(self, name: str, view: ClusterView | None = None) -> list[HealAction]:
        """Restart failed, stopped or silent nodes, recreate missing workers and resume
        workers drained by an unfinished scale-down (raycai_core.cluster.healing decides).

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
                plan = plan_heal(view, desired, time.time())
                done = [await self._heal_step(desired.spec, view, s) for s in plan.steps]
                actions = [action for action in done if action is not None]
        except ClusterLocked:
            self.report("heal", f"{name}: another operation is running; not healing now")
            return []
        for action in actions:
            self.report(
                "heal", f"{action.node}: {action.action} ({action.reason})", level="warning"
            )
        return actions

    async def _heal_step(
        self, spec: ClusterSpec, view: ClusterView, step: HealStep
    ) -> HealAction | None:
        if step.kind == "restart":
            row = view.row(step.node)
            assert row is not None and row.app is not None
            await self.cml.restart_application(row.app.app.id)
            return HealAction(step.node, "restarted", step.reason)
        if step.kind == "recreate":
            await self._create(spec, step.node)
            return HealAction(step.node, "recreated", step.reason)
        # The launcher rejoins when its request goes; without one it rejoins by itself.
        if not await asyncio.to_thread(clear_drain_request, self.paths(spec.name), step.node):
            return None
        return HealAction(step.node, "resumed", step.reason)

    # -- teardown ------------------------------------------------------------------------

    async def down(self, name: str, *, timeout: float = 300.0) -> list[str]:
        """Delete every application of the cluster and its files (logs are kept).

        Safe to rerun: it first marks the cluster `deleting` so nothing recreates it.
        Returns the names of the applications deleted by this call.
        """
        paths = self.paths(name)
        if await asyncio.to_thread(read_desired, paths) is not None:
            async with self.lock(name):  # a scale in progress must not write `active` back
                desired = await asyncio.to_thread(read_desired, paths)
                if desired is not None:
                    await asyncio.to_thread(self._write_spec, desired.spec, "deleting")
        members = await self.members(name)
        if members:
            self.report("delete", f"deleting {len(members)} application(s)", 0, len(members))
        done = 0

        async def delete(member: ClusterApp) -> None:
            nonlocal done
            await self.cml.delete_application(member.app.id)
            done += 1
            self.report("delete", f"{member.app.name} deleted", done, len(members))

        await asyncio.gather(*(delete(m) for m in members))
        deadline = time.monotonic() + timeout
        while await self.members(name):
            _check_deadline(deadline, "applications are still listed after delete; rerun down")
            await asyncio.sleep(self.api_poll_s)
        await asyncio.to_thread(_remove_cluster_files, paths)
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
        summaries.append(ClusterSummary(name, desired, members, joined, records))
    return summaries


def removal_order(rows: Iterable[NodeRow]) -> list[NodeRow]:
    """Workers in the order they should go: not running, not joined, idle, busy; then
    the highest index first within each group."""
    return sorted(rows, key=lambda r: (_removal_tier(r), -r.index))


NOT_RUNNING, NOT_JOINED, IDLE, BUSY = range(4)


def _removal_tier(row: NodeRow) -> int:
    if row.app_status not in (AppStatus.RUNNING, AppStatus.STARTING):
        return NOT_RUNNING
    if not row.joined:
        return NOT_JOINED
    if row.ray is not None and row.ray.idle:
        return IDLE
    return BUSY  # busy, or Ray did not say: assume work runs there


def _removal_reason(row: NodeRow) -> str:
    return ("application " + row.app_status.value, "not joined", "idle", "busy")[_removal_tier(row)]


def _cancel_drains(paths: ClusterPaths, nodes: Iterable[str]) -> None:
    """Drain requests of workers the cluster keeps (left by an interrupted scale-down)."""
    for node in nodes:
        clear_drain_request(paths, node)


def _missing_nodes(existing: dict[str, object], wanted: int) -> list[str]:
    """Nodes to create so that `wanted` workers exist, lowest free indexes first."""
    missing = []
    index = 1
    have = len(existing)
    while have + len(missing) < wanted:
        node = worker_node(index)
        if node not in existing:
            missing.append(node)
        index += 1
    return missing


def _pick_extra_by_index(workers: list[ClusterApp], wanted: int) -> list[ClusterApp]:
    """Workers beyond the wanted count (from an interrupted scale-down), highest index first."""
    ordered = sorted(workers, key=lambda m: m.index, reverse=True)
    return ordered[: max(0, len(workers) - wanted)]


def _check_sizes_unchanged(
    previous: Desired | None, spec: ClusterSpec, members: list[ClusterApp]
) -> None:
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


def _head_wait_reason(status: AppStatus, phase: str | None) -> str:
    if status is AppStatus.STARTING and phase is None:
        return "head application STARTING: waiting for CML to schedule it (quota or capacity)"
    if status is AppStatus.FAILED:
        return "head application FAILED: the platform restarts it"
    if phase:
        return f"head launcher: {phase}"
    return f"head application {status.value}"


def _not_ready_summary(view: ClusterView) -> str:
    reasons = [f"{r.node}: {r.not_ready_reason}" for r in view.rows if r.not_ready_reason]
    return "not all nodes joined Ray; " + "; ".join(reasons[:5])


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
        *autoscaler_files(paths),
    ):
        file.unlink(missing_ok=True)
    shutil.rmtree(paths.nodes_dir, ignore_errors=True)
    shutil.rmtree(paths.drain_dir, ignore_errors=True)
