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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raycai_core.cluster.apps import APP_FILTER, ClusterApp, group_by_cluster
from raycai_core.cluster.desired import Desired, DesiredState, read_desired, write_desired
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.observe import Observer
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


@dataclass(frozen=True)
class ScaleResult:
    before: int
    after: int
    added: list[str]
    removed: list[str]


@dataclass(frozen=True)
class HealAction:
    node: str
    action: Literal["restarted", "recreated"]
    reason: str


@dataclass(frozen=True)
class ClusterSummary:
    name: str
    desired: Desired | None
    members: list[ClusterApp]
    joined_workers: int

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
        address = await self._wait_head(spec, head, deadline)
        self.report(
            "head-ready",
            f"head ready: GCS {address.gcs_address}, dashboard {address.dashboard_url}",
        )
        if wait:
            return await self.wait_ready(spec.name, deadline=deadline)
        return await self.observer.observe(spec.name)

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
        extra = _pick_extra_by_index(workers, wanted)
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
        """Wait until every desired node has joined Ray (per the Ray dashboard)."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        last: tuple[int, int] | None = None
        while True:
            view = await self.observer.observe(name)
            total = view.desired_workers + 1
            joined = view.workers_joined + (1 if view.head_row and view.head_row.joined else 0)
            if (joined, total) != last:
                self.report("joined", f"nodes joined Ray: {joined}/{total}", joined, total)
                last = (joined, total)
            if view.ready:
                return view
            failed = [r for r in view.rows if r.record and r.record.phase == "failed"]
            if failed:
                row = failed[0]
                raise NodeFailed(
                    f"{row.node} failed: {row.record.error if row.record else ''} "
                    f"(log: {self.paths(name).node_log(row.node)})"
                )
            _check_deadline(deadline, _not_ready_summary(view))
            await asyncio.sleep(max(self.file_poll_s, 0.25))

    # -- scale ---------------------------------------------------------------------------

    async def scale(
        self, name: str, count: int, *, wait: bool = False, timeout: float | None = 600.0
    ) -> ScaleResult:
        """Set the number of workers; removes failed, unjoined, then idle workers first."""
        paths = self.paths(name)
        desired = await asyncio.to_thread(read_desired, paths)
        if desired is None:
            raise ClusterNotFound(
                f"no cluster named {name!r} in this project (`raycai list` shows them)"
            )
        if desired.state == "deleting":
            raise ClusterError(f"cluster {name!r} is being deleted")
        spec = desired.spec.with_workers(count)
        before = desired.spec.workers.count
        await asyncio.to_thread(self._write_spec, spec)
        view = await self.observer.observe(name)
        workers = [row for row in view.rows if row.role == "worker" and row.app is not None]
        added: list[str] = []
        removed: list[str] = []
        if len(workers) < count:
            existing = {row.node: row.app for row in workers if row.app is not None}
            nodes = _missing_nodes(existing, count)
            self.report("scale", f"adding {len(nodes)} worker(s): {', '.join(nodes)}")
            created = await asyncio.gather(
                *(self._create(spec, node) for node in nodes), return_exceptions=True
            )
            outcomes = list(zip(nodes, created, strict=True))
            errors = [f"{n}: {r}" for n, r in outcomes if isinstance(r, Exception)]
            added = [n for n, r in outcomes if not isinstance(r, Exception)]
            if errors:
                raise ClusterError(
                    "some workers could not be created (rerun to resume):\n  " + "\n  ".join(errors)
                )
        elif len(workers) > count:
            chosen = removal_order(workers)[: len(workers) - count]
            self.report(
                "scale", "removing " + ", ".join(f"{r.node} ({_removal_reason(r)})" for r in chosen)
            )
            await asyncio.gather(*(self._delete(r.app) for r in chosen if r.app is not None))
            removed = [r.node for r in chosen]
        else:
            self.report("scale", f"{name} already has {count} worker(s)")
        if wait:
            await self.wait_ready(name, timeout=timeout)
        return ScaleResult(before=before, after=count, added=added, removed=removed)

    # -- heal ----------------------------------------------------------------------------

    async def heal(self, name: str, view: ClusterView | None = None) -> list[HealAction]:
        """Restart failed or stopped nodes and recreate missing workers of an active cluster."""
        desired = await asyncio.to_thread(read_desired, self.paths(name))
        if desired is None or desired.state != "active":
            return []
        view = view or await self.observer.observe(name)
        actions: list[HealAction] = []
        for row in view.rows:
            if row.app is None:
                continue
            if row.app_status in (AppStatus.FAILED, AppStatus.STOPPED):
                reason = f"application {row.app_status.value}"
                if row.record and row.record.error:
                    reason += f": {row.record.error}"
                await self.cml.restart_application(row.app.app.id)
                actions.append(HealAction(row.node, "restarted", reason))
        existing = {r.node: r.app for r in view.worker_rows if r.app is not None}
        for node in _missing_nodes(existing, desired.spec.workers.count):
            await self._create(desired.spec, node)
            actions.append(HealAction(node, "recreated", "application missing"))
        for action in actions:
            self.report(
                "heal", f"{action.node}: {action.action} ({action.reason})", level="warning"
            )
        return actions

    # -- teardown ------------------------------------------------------------------------

    async def down(self, name: str, *, timeout: float = 300.0) -> list[str]:
        """Delete every application of the cluster and its files (logs are kept).

        Safe to rerun: it first marks the cluster `deleting` so nothing recreates it.
        Returns the names of the applications deleted by this call.
        """
        paths = self.paths(name)
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


def summarise(project_dir: Path, grouped: dict[str, list[ClusterApp]]) -> list[ClusterSummary]:
    names = set(grouped) | set(cluster_names_on_disk(project_dir))
    summaries = []
    for name in sorted(names):
        paths = ClusterPaths(project_dir, name)
        try:
            desired = read_desired(paths)
        except Exception:  # a corrupt file must not hide the cluster's apps
            desired = None
        records = read_node_records(paths)
        joined = sum(
            1
            for node, rec in records.items()
            if node != HEAD_NODE
            and rec.phase == "joined"
            and any(
                m.node == node and m.app.status is AppStatus.RUNNING for m in grouped.get(name, [])
            )
        )
        summaries.append(ClusterSummary(name, desired, grouped.get(name, []), joined))
    return summaries


def removal_order(rows: Iterable[NodeRow]) -> list[NodeRow]:
    """Workers in the order they should go: not running, not joined, idle, busy; then
    the highest index first within each group."""
    return sorted(rows, key=lambda r: (_removal_tier(r), -r.index))


def _removal_tier(row: NodeRow) -> int:
    if row.app_status not in (AppStatus.RUNNING, AppStatus.STARTING):
        return 0
    if not row.joined:
        return 1
    if row.ray is not None and row.ray.idle:
        return 2
    return 3


def _removal_reason(row: NodeRow) -> str:
    return ("application " + row.app_status.value, "not joined", "idle", "busy")[_removal_tier(row)]


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
    ):
        file.unlink(missing_ok=True)
    shutil.rmtree(paths.nodes_dir, ignore_errors=True)
