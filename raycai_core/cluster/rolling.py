"""Carrying out a rolling update (the plan is rolling_plan.py's, the record rolling_state.py's).

Under the cluster's lock, for the whole update (a scale, heal or down waits for it; the
TUI's healing skips the cluster meanwhile):
1. with `--restart-head`, the head first: its application takes the new settings (update,
   then restart: same application, same URL); the stored spec gets the head's and the
   cluster-wide settings; raycai waits for the new head, then deploys the stored Serve
   config again (a new head has none); jobs that ran are shown LOST by the ledger's rule
   (a new head incarnation).
2. group by group, one worker at a time: the group's new settings are stored (cluster.json
   and launcher.json, which the new worker's launcher reads); a new worker is created at
   the group's lowest free index; once Ray lists it ALIVE the old one is drained (the
   scale-down's drain) and deleted. A new worker still waiting to be scheduled (STARTING,
   the quota) after `replace_wait_s`, or one that fails or does not join within
   `join_timeout_s`, stops the update: the new application is deleted, the old worker
   stays, the record says why (a group none of whose workers were replaced gets its
   previous settings back).
3. done: the target spec is stored whole (counts included); `up` then converges as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.drain import drain_node_id
from raycai_core.cluster.healing import missing_workers
from raycai_core.cluster.rolling_plan import (
    Replacement,
    RollingPlan,
    UpdateRefused,
    plan_update,
    settings_changed,
    with_group_settings,
    with_head,
)
from raycai_core.cluster.rolling_state import (
    Replaced,
    RollingRecord,
    Step,
    read_rolling,
    write_rolling,
)
from raycai_core.cluster.types import Action, ClusterError, Level
from raycai_core.cluster.view import ClusterView, NodeRow
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ClusterManager

REPLACE_WAIT_S = 300.0  # a new worker unscheduled (quota) this long stops the update
JOIN_TIMEOUT_S = 600.0  # scheduled, but not in Ray's node list after this long: stop
HEAD_TIMEOUT_S = 900.0


class UpdateStopped(ClusterError):
    """The update stopped at a replacement it could not make; the cluster is consistent
    (the old node stays, the new application was deleted). `record` says how far it got."""

    def __init__(self, message: str, record: RollingRecord) -> None:
        self.record = record
        super().__init__(message)


def _resume_plan(record: RollingRecord, workers: list[NodeRow]) -> RollingPlan:
    """What is left of an unfinished update, as a plan to show."""
    listed = {r.node: r.app.app.id for r in workers if r.app is not None}
    pending = [r for r in record.pending() if listed.get(r.node) == r.app_id]
    target = record.target_spec()
    going = {r.node for r in pending}
    return RollingPlan(
        cluster=record.cluster,
        previous=ClusterSpec.model_validate(record.previous),
        target=target,
        changes=[f"continuing the unfinished update ({record.progress_text()})"],
        restart_head=[] if record.head_done else record.restart_head,
        replace=pending,
        keep=[r.node for r in workers if r.node not in going],
        peak=None,
        notes=[f"it stopped: {record.reason}"] if record.reason else [],
    )


async def plan_for(
    ops: ClusterManager, spec: ClusterSpec, *, restart_head: bool = False
) -> RollingPlan | None:
    """The rolling update `raycai up spec` needs on an existing cluster, or None (a new
    cluster, or nothing but counts or in-place settings change). UpdateRefused when it
    cannot be done. Reads only; `apply` plans again under the lock."""
    paths = ops.paths(spec.name)
    desired = await asyncio.to_thread(read_desired, paths)
    if desired is None or desired.state != "active":
        return None
    record = await asyncio.to_thread(read_rolling, paths)
    if record is not None and record.binds(spec):
        raise UpdateRefused(_other_target(spec.name, record))
    if record is not None and record.unfinished and record.same_target(spec):
        view = await ops.observer.observe(spec.name, with_ray=False)
        return _resume_plan(record, view.worker_rows)
    if not settings_changed(desired.spec, spec):
        return None
    view = await ops.observer.observe(spec.name)
    if not any(row.app is not None for row in view.rows):
        return None  # nothing runs: up creates every node with the new settings
    return plan_update(desired.spec, spec, view.worker_rows, restart_head=restart_head)


def _other_target(name: str, record: RollingRecord) -> str:
    return (
        f"an update of cluster {name} to other settings is unfinished "
        f"({record.progress_text()}{'; stopped: ' + record.reason if record.reason else ''}). "
        f"Finish it first: `raycai up` with the spec it goes to (`raycai status {name} "
        f"--json` shows it under update), then change again; or `raycai down {name}`"
    )


class RollingUpdate:
    """One update of one cluster, carried out by a ClusterManager's primitives."""

    def __init__(
        self,
        ops: ClusterManager,
        spec: ClusterSpec,
        *,
        restart_head: bool = False,
        replace_wait_s: float = REPLACE_WAIT_S,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        drain_timeout: float = 60.0,
        poll_s: float = 0.5,
    ) -> None:
        self.ops = ops
        self.spec = spec
        self.name = spec.name
        self.paths = ops.paths(spec.name)
        self.restart_head = restart_head
        self.replace_wait_s = replace_wait_s
        self.join_timeout_s = join_timeout_s
        self.drain_timeout = drain_timeout
        self.poll_s = poll_s
        self.record: RollingRecord | None = None

    # -- the record ---------------------------------------------------------------------

    async def _save(self) -> None:
        assert self.record is not None
        await asyncio.to_thread(write_rolling, self.paths, self.record)

    async def _say(self, message: str, level: Level = "info") -> None:
        self.ops.report("update", message, level=level)
        if self.record is not None:
            self.record.note(message)
            await self._save()

    async def _stored(self) -> ClusterSpec:
        desired = await asyncio.to_thread(read_desired, self.paths)
        if desired is None or desired.state != "active":
            raise ClusterError(f"cluster {self.name!r} is being deleted or suspended")
        return desired.spec

    # -- the whole update ---------------------------------------------------------------

    async def run(self) -> RollingRecord:
        """Carry the update out (or go on with an unfinished one) under the cluster's lock."""
        async with self.ops.lock(self.name):
            record = await asyncio.to_thread(read_rolling, self.paths)
            if record is not None and record.binds(self.spec):
                raise UpdateRefused(_other_target(self.name, record))
            if record is not None and record.unfinished and record.same_target(self.spec):
                record.state, record.reason = "running", ""
                self.record = record
                await self._say(f"{self.name}: continuing the update ({record.progress_text()})")
            else:
                stored = await self._stored()
                view = await self.ops.observer.observe(self.name)
                plan = plan_update(
                    stored, self.spec, view.worker_rows, restart_head=self.restart_head
                )
                self.record = RollingRecord.begin(plan)
                await self._say(
                    f"{self.name}: update started ({len(plan.replace)} worker(s) to replace"
                    + (", the head to restart" if plan.restart_head else "")
                    + ")"
                )
            try:
                if self.record.restart_head and not self.record.head_done:
                    await self._restart_head()
                for item in self.record.pending():
                    await self._replace(item)
                await self.ops._store(self.spec)  # counts included; up converges them
                self.record.state, self.record.current = "done", None
                self.record.finished_at = time.time()
                await self._say(f"{self.name}: update done ({self.record.progress_text()})")
            except UpdateStopped:
                raise
            except BaseException:
                # Interrupted (or an API error): the record stays `running` without a lock
                # holder, which status reports as interrupted; `up` goes on from it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._save())
                raise
            return self.record

    # -- the head -------------------------------------------------------------------------

    async def _restart_head(self) -> None:
        assert self.record is not None
        view = await self.ops.observer.observe(self.name, with_ray=False)
        row = view.row(HEAD_NODE)
        if row is None or row.app is None:
            raise ClusterError(f"cluster {self.name} has no head application to restart")
        stored = with_head(await self._stored(), self.spec)
        await self._say(
            f"head: restarting with the new settings ({'; '.join(self.record.restart_head)})"
        )
        await self.ops._store(stored)
        request = self.ops._request(stored, HEAD_NODE)
        await self.ops._forget_head(self.paths)
        await self.ops.cml.update_application(
            row.app.app.id,
            cpu=request.cpu,
            memory=request.memory,
            nvidia_gpu=request.nvidia_gpu,
            runtime_identifier=request.runtime_identifier,
        )
        app = await self.ops.cml.restart_application(row.app.app.id)
        head = type(row.app)(app=app, cluster=self.name, node=HEAD_NODE)
        address = await self.ops._wait_head(stored, head, time.monotonic() + HEAD_TIMEOUT_S)
        self.record.head_done = True
        await self._say(f"head: restarted ({address.gcs_address}); jobs that ran are shown LOST")
        await self._reapply_serve()

    async def _reapply_serve(self) -> None:
        """A new head has no Serve applications: deploy the stored config again."""
        if not await asyncio.to_thread(self.paths.serve_json.is_file):
            return
        from raycai_core.work.serve_redeploy import redeploy_stored

        try:
            apps = await redeploy_stored(self.ops.project_dir, self.name)
        except Exception as exc:  # the update goes on; the user can deploy again
            await self._say(
                f"head: Serve config not deployed again ({exc}); `raycai serve deploy` does it",
                "warning",
            )
            return
        await self._say(f"head: Serve deployed again ({apps} application(s))")

    # -- one worker ---------------------------------------------------------------------

    async def _replace(self, item: Replacement) -> None:
        record = self.record
        assert record is not None
        view = await self.ops.observer.observe(self.name)
        old = view.row(item.node)
        step = record.current if record.current and record.current.old == item.node else None
        if step is None and (old is None or old.app is None or old.app.app.id != item.app_id):
            record.replaced.append(Replaced(item.group, item.node, ""))
            await self._say(f"{item.node}: gone already; nothing to replace")
            return
        stored = await self._stored()
        if _settings_of(stored, item.group) != _settings_of(self.spec, item.group) or (
            stored.env,
            stored.ray,
        ) != (self.spec.env, self.spec.ray):
            stored = with_group_settings(stored, item.group, self.spec)
            await self.ops._store(stored)
            await self._say(f"group {item.group}: new settings stored for its new workers")
        if step is None:
            names = {r.node for r in view.worker_rows}
            step = Step(
                item.group,
                item.node,
                missing_workers(names, _count(names, item.group) + 1, item.group)[0],
            )
            record.current = step
            await self._save()
        if step.phase == "creating":
            existing = view.row(step.new)
            if existing is not None and existing.app is not None:
                step.new_app_id = existing.app.app.id  # created before an interruption
            else:
                member = await self.ops._create(stored, step.new)
                step.new_app_id = member.app.id
            step.phase, step.since = "joining", time.time()
            await self._say(
                f"{step.new}: created to replace {step.old}; waiting until it joined Ray"
            )
        if step.phase == "joining":
            await self._wait_joined(step, stored)
            step.phase = "draining"
            await self._say(f"{step.new}: joined; draining {step.old}")
        view = await self.ops.observer.observe(self.name)
        row = view.row(step.old)
        if row is not None and row.app is not None:
            await self.ops._act(self.name, _removal(row), drain_timeout=self.drain_timeout)
        record.replaced.append(Replaced(step.group, step.old, step.new))
        record.current = None
        await self._say(f"{step.old}: replaced by {step.new} ({record.progress_text()})")

    async def _wait_joined(self, step: Step, stored: ClusterSpec) -> None:
        saved = time.monotonic()
        while True:
            if time.monotonic() - saved > 60:  # the provider's pause wants a fresh record
                await self._save()
                saved = time.monotonic()
            view = await self.ops.observer.observe(self.name)
            row = view.row(step.new)
            waited = time.time() - step.since
            why = _stop_reason(view, row, waited, self.replace_wait_s, self.join_timeout_s)
            if why is None and row is not None and row.joined and view.ray_known:
                return
            if why is not None:
                await self._stop(step, why, stored)
            await asyncio.sleep(self.poll_s)

    async def _stop(self, step: Step, why: str, stored: ClusterSpec) -> None:
        """Delete the new application, keep the old worker, record why; raise."""
        record = self.record
        assert record is not None
        if step.new_app_id:
            await self.ops.cml.delete_application(step.new_app_id)
        record.current = None
        if not any(r.group == step.group and r.new for r in record.replaced):
            # No worker of this group runs the new settings: store its previous ones again.
            previous = ClusterSpec.model_validate(record.previous)
            whole = not record.replaced and not record.head_done
            reverted = with_group_settings(stored, step.group, previous)
            if not whole:
                reverted = reverted.model_copy(
                    update={"env": stored.env, "ray": stored.ray, "serve": stored.serve}
                )
            await self.ops._store(reverted)
        record.state = "stopped"
        record.reason = (
            f"{step.new} (replacing {step.old}): {why}; its application was deleted and "
            f"{step.old} keeps running"
        )
        await self._say(f"update stopped: {record.reason}", "error")
        raise UpdateStopped(
            f"update of {self.name} stopped: {record.reason}. The cluster is consistent "
            f"({record.progress_text()}); `raycai up` with the same spec tries again",
            record,
        )


def _count(nodes: set[str], group: str) -> int:
    from raycai_core.naming import node_group

    return sum(1 for node in nodes if node_group(node) == group)


def _settings_of(spec: ClusterSpec, group: str) -> object:
    from raycai_core.cluster.rolling_plan import group_settings

    return group_settings(spec.group(group))


def _removal(row: NodeRow) -> Action:
    """Drain the old worker when it is part of Ray (and its launcher can), then delete it."""
    drain_id = None
    note = ""
    if row.joined:
        drain_id = drain_node_id(row.record, row.ray.node_id if row.ray else None)
        if drain_id is None:
            note = "not drained (its launcher cannot drain); removing it"
    return Action("remove", row.node, "rolling update", row.app, drain_id, note)


def _stop_reason(
    view: ClusterView,
    row: NodeRow | None,
    waited: float,
    replace_wait_s: float,
    join_timeout_s: float,
) -> str | None:
    """Why the replacement cannot go on, or None (wait more)."""
    if row is None or row.app is None:
        return "its application is gone"
    status = row.app_status
    if status in (AppStatus.FAILED, AppStatus.STOPPED):
        return f"its application is {status.value}"
    # Not yet run by the workspace: no record, or only the record of an earlier node of the
    # same name (a rolling update reuses the names of the workers it replaced).
    unscheduled = row.unscheduled_s is not None
    if not unscheduled and row.record is not None and row.record.phase == "failed":
        return f"its launcher failed: {row.record.error or 'see its log'}"
    if unscheduled:
        if waited >= replace_wait_s:
            app = row.app.app
            return (
                f"waited {waited:.0f} s for the workspace to schedule it (limit "
                f"{replace_wait_s:g} s; --replace-wait): the project's quota has no room "
                f"for one more worker (cpu {app.cpu:g}, memory {app.memory:g} GB, gpu "
                f"{app.nvidia_gpu} requested). Free some quota, then rerun"
            )
        return None
    if waited >= replace_wait_s + join_timeout_s:
        return f"not joined Ray after {waited:.0f} s ({view.reason(row) or row.phase})"
    return None
