"""Suspend and resume a cluster: its applications stopped (holding no quota), then started.

Suspend (`raycai suspend NAME`, the TUI's `z`; the head's idle check does the same on its
own, raycai_core/launcher/idle_suspend.py): `state = "suspended"` goes into cluster.json
under the cluster's lock first, so that healing, the autoscaler's provider and the workers'
drain-on-stop leave the cluster alone; then the head stops its autoscaler, the workers above
each group's minimum are deleted, the others' applications stopped (CML's stop: no drain,
nothing runs), and the head's last. Rerunning finishes an interrupted suspend.

Resume is `up` with the stored spec: `active` is stored first (healing converges an
interrupted resume), the stopped applications restart (the head's and the workers' at
once, so the workers are back with it), missing workers are created up to each group's
count (its minimum when it autoscales), and the head re-applies serve.json once its
dashboard answers (it knows from its record that this run follows a suspend).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired, Suspension, read_desired, write_desired
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.records import read_node_record
from raycai_core.cluster.types import ClusterError, ClusterNotFound
from raycai_core.cluster.view import ClusterView
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec

AUTOSCALER_STOP_WAIT_S = 15.0
WORKERS_STOP_WAIT_S = 60.0
STOPPED = (AppStatus.STOPPED, AppStatus.STOPPING)


@dataclass(frozen=True)
class SuspendPlan:
    """`delete`: workers above their group's minimum (highest index first) or of a group the
    spec no longer has; `stop`: the other workers not stopped yet; `head`: its application
    when it is not stopped yet."""

    delete: list[ClusterApp]
    stop: list[ClusterApp]
    head: ClusterApp | None


@dataclass(frozen=True)
class SuspendResult:
    already: bool  # the cluster was suspended before this call (it finished the rest)
    deleted: list[str]
    stopped: list[str]


def plan_suspend(spec: ClusterSpec, members: Sequence[ClusterApp]) -> SuspendPlan:
    """Pure: what a suspend does to `members` (the idle check's copy: parity-tested)."""
    head = next((m for m in members if m.node == HEAD_NODE), None)
    delete: list[ClusterApp] = []
    stop: list[ClusterApp] = []
    for member in members:
        if member.node != HEAD_NODE and member.group not in spec.groups:
            delete.append(member)
    for name, group in spec.groups.items():
        mine = sorted((m for m in members if m.group == name), key=lambda m: m.index)
        delete += list(reversed(mine[group.count :]))
        stop += [m for m in mine[: group.count] if m.app.status not in STOPPED]
    if head is not None and head.app.status in STOPPED:
        head = None
    return SuspendPlan(delete=delete, stop=stop, head=head)


def suspended_note(
    desired: Desired | None, now: float | None = None, *, short: bool = False
) -> str | None:
    """`suspended since 2026-12-07 03:49 UTC (12 min ago): idle for 30 min` for a suspended
    cluster (`short`, for a table's column: `12 min ago: idle for 30 min`), else None."""
    if desired is None or desired.state != "suspended":
        return None
    info = desired.suspension
    if info is None or not info.at:
        return "" if short else "suspended"
    ago = max(0.0, (time.time() if now is None else now) - info.at)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.at))
    text = f"{_ago(ago)} ago" if short else f"suspended since {when} ({_ago(ago)} ago)"
    return f"{text}: {info.reason}" if info.reason else text


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


async def suspend(
    manager: ClusterManager, name: str, *, reason: str = "suspended by hand"
) -> SuspendResult:
    """Suspend `name` (see the module's docstring); safe to rerun."""
    paths = manager.paths(name)
    async with manager.lock(name):
        desired = await asyncio.to_thread(read_desired, paths)
        if desired is None:
            raise ClusterNotFound(f"no cluster named {name!r} in this project")
        if desired.state == "deleting":
            raise ClusterError(f"cluster {name!r} is being deleted")
        already = desired.state == "suspended"
        if not already:
            info = Suspension(at=time.time(), reason=reason, by="user")
            await asyncio.to_thread(write_desired, paths, desired.spec, "suspended", info)
            manager.report("suspend", f"{name}: marked suspended ({reason})")
        else:
            manager.report("suspend", f"{name} is suspended already: finishing the rest")
    await _wait_autoscaler_off(manager, name)
    plan = plan_suspend(desired.spec, await manager.members(name))
    await _check_still_suspended(manager, name)
    for member in plan.delete:
        await manager.cml.delete_application(member.app.id)
        manager.report("suspend", f"{member.node}: deleted (above its group's minimum)")
    await asyncio.gather(*(manager.cml.stop_application(m.app.id) for m in plan.stop))
    for member in plan.stop:
        manager.report("suspend", f"{member.node}: stopping")
    await _wait_stopped(manager, name, {m.app.id for m in plan.stop})
    stopped = [m.node for m in plan.stop]
    if plan.head is not None:
        await _check_still_suspended(manager, name)
        await manager.cml.stop_application(plan.head.app.id)
        manager.report("suspend", "head: stopping")
        await _wait_stopped(manager, name, {plan.head.app.id})
        stopped.append(HEAD_NODE)
    manager.report("suspend", f"{name} suspended: its applications hold no quota")
    return SuspendResult(already, [m.node for m in plan.delete], stopped)


async def _check_still_suspended(manager: ClusterManager, name: str) -> None:
    """A resume (or down) meanwhile wins: what it starts is not stopped again."""
    desired = await asyncio.to_thread(read_desired, manager.paths(name))
    if desired is None or desired.state != "suspended":
        now = "gone" if desired is None else desired.state
        raise ClusterError(f"cluster {name!r} is {now} now (resumed meanwhile?): suspend stopped")


async def _wait_autoscaler_off(manager: ClusterManager, name: str) -> None:
    """The head launcher stops its autoscaler once it reads `suspended` (every 2 s)."""
    paths = manager.paths(name)
    deadline = time.monotonic() + AUTOSCALER_STOP_WAIT_S
    while time.monotonic() < deadline:
        record = await asyncio.to_thread(read_node_record, paths, HEAD_NODE)
        autoscaler = record.autoscaler if record is not None else None
        if autoscaler is None or autoscaler.state == "off":
            return
        if record is None or record.phase in ("stopped", "failed"):
            return
        await asyncio.sleep(0.5)
    manager.report(
        "suspend",
        "the autoscaler still runs; its provider changes nothing while suspended",
        level="warning",
    )


async def _wait_stopped(manager: ClusterManager, name: str, ids: set[str]) -> None:
    """The applications `ids` stopped (bounded): the workers' before the head's goes."""
    deadline = time.monotonic() + WORKERS_STOP_WAIT_S
    while ids and time.monotonic() < deadline:
        listed = {m.app.id: m for m in await manager.members(name)}
        ids = {
            i
            for i in ids
            if i in listed and listed[i].app.status not in (AppStatus.STOPPED, AppStatus.FAILED)
        }
        if ids:
            await asyncio.sleep(max(manager.api_poll_s, 0.25))


async def resume(
    manager: ClusterManager, name: str, *, wait: bool = True, timeout: float | None = 900.0
) -> ClusterView:
    """Start a suspended cluster again (`up` with its stored spec; see the module's
    docstring) and, with `wait`, until it is ready."""
    desired = await asyncio.to_thread(read_desired, manager.paths(name))
    if desired is None:
        raise ClusterNotFound(f"no cluster named {name!r} in this project")
    if desired.state == "deleting":
        raise ClusterError(f"cluster {name!r} is being deleted")
    return await manager.up(desired.spec, wait=wait, timeout=timeout)


async def wake_if_suspended(
    manager: ClusterManager,
    name: str,
    say: Callable[[str], None],
    *,
    timeout: float | None = 900.0,
) -> bool:
    """Before a job, run or connect: a suspended cluster is resumed (saying so) and waited
    for until ready; False when it was not suspended."""
    desired = await asyncio.to_thread(read_desired, manager.paths(name))
    note = suspended_note(desired)
    if note is None:
        return False
    say(f"cluster {name} is {note}; resuming it (raycai resume) and waiting until it is ready")
    started = time.monotonic()
    await resume(manager, name, wait=True, timeout=timeout)
    say(f"cluster {name} resumed and ready in {time.monotonic() - started:.0f} s")
    return True
