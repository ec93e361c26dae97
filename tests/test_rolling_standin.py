"""Rolling updates end to end on the local workspace with the real launchers and the
stand-in Ray (tests/fixtures/stand_in_ray.py): the order of a replacement, the stop when
the quota has no room, going on after an interruption, the CLI's plan and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.rolling import RollingUpdate, UpdateStopped
from raycai_core.cluster.rolling_state import interrupted, read_rolling
from raycai_core.cluster.types import Progress
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import ClusterSpec, spec_from_flags
from tests.fixtures.workspace import RUNTIME, wait_for
from tests.helpers import cluster_apps, nodes_of, raycai
from tests.tui.support import client_for, fake_ray, small_spec

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def bigger(workers: int = 2, cpu: float = 2) -> ClusterSpec:
    return spec_from_flags(
        name="demo",
        runtime=RUNTIME,
        workers=workers,
        cpu=cpu,
        memory=1,
        head_cpu=1,
        head_memory=1,
    )


@pytest.fixture
async def demo(fake_ray: WorkspaceHandle) -> AsyncIterator[tuple[ClusterManager, list[Progress]]]:
    """Cluster `demo`: a head and two workers of 1 vCPU that joined the stand-in Ray."""
    events: list[Progress] = []
    async with client_for(fake_ray) as cml:
        ops = ClusterManager(cml, fake_ray.project_dir, progress=events.append)
        try:
            view = await ops.up(small_spec("demo", workers=2), timeout=60)
            assert view.ready and view.ray_known
            yield ops, events
        finally:
            fake_ray.update_config(quota_cpu=None)
            await ops.down("demo")
            await ops.observer.aclose()


async def _workers(fake_ray: WorkspaceHandle) -> dict[str, float]:
    return {
        a.environment["RAYCAI_NODE"]: a.cpu
        for a in await cluster_apps(fake_ray)
        if a.environment.get("RAYCAI_CLUSTER") == "demo" and a.environment["RAYCAI_NODE"] != "head"
    }


async def test_workers_are_replaced_one_at_a_time_and_capacity_never_drops(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, events = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    lowest: list[int] = []
    most: list[int] = []

    async def sample() -> None:
        while True:
            view = await ops.observer.observe("demo")
            if view.ray_known:
                lowest.append(view.workers_joined)
            most.append(len(view.worker_rows))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        record = await RollingUpdate(ops, bigger(), replace_wait_s=30, poll_s=0.1).run()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    assert record.state == "done"
    assert [(r.old, r.new) for r in record.replaced] == [
        ("worker-2", "worker-3"),  # both idle: the highest index first
        ("worker-1", "worker-2"),
    ]
    assert await _workers(fake_ray) == {"worker-2": 2.0, "worker-3": 2.0}
    assert min(lowest) >= 2  # never fewer joined workers than the count
    assert max(most) == 3  # one extra worker at a time
    desired = read_desired(paths)
    assert desired is not None and desired.spec.workers.cpu == 2
    stored = read_rolling(paths)
    assert stored is not None and stored.state == "done" and not interrupted(paths, stored)
    messages = [e.message for e in events if e.step in ("update", "drain")]
    assert "worker-3: created to replace worker-2; waiting until it joined Ray" in messages
    assert any(m.startswith("worker-2: draining") for m in messages)
    # A second up with the same spec converges without replacing anything.
    view = await ops.up(bigger(), timeout=60)
    assert view.ready and await _workers(fake_ray) == {"worker-2": 2.0, "worker-3": 2.0}


async def test_no_quota_for_the_extra_worker_stops_with_nothing_lost_and_a_rerun_finishes(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, _ = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    fake_ray.update_config(quota_cpu=3)  # head + 2 workers of 1 vCPU: no room for one more
    update = RollingUpdate(ops, bigger(), replace_wait_s=1.0, poll_s=0.1)
    with pytest.raises(UpdateStopped) as stopped:
        await update.run()
    message = str(stopped.value)
    assert "the project's quota has no room for one more worker (cpu 2" in message
    assert "its application was deleted and worker-2 keeps running" in message
    assert await _workers(fake_ray) == {"worker-1": 1.0, "worker-2": 1.0}
    desired = read_desired(paths)
    assert desired is not None and desired.spec.workers.cpu == 1  # nothing replaced: as before
    record = read_rolling(paths)
    assert record is not None and record.state == "stopped" and record.replaced == []
    view = await ops.observer.observe("demo")
    assert view.ready

    fake_ray.update_config(quota_cpu=None)
    record = await RollingUpdate(ops, bigger(), replace_wait_s=30, poll_s=0.1).run()
    assert record.state == "done" and len(record.replaced) == 2
    assert sorted((await _workers(fake_ray)).values()) == [2.0, 2.0]


async def test_an_interrupted_update_is_reported_and_the_next_run_goes_on_without_duplicates(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, _ = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    fake_ray.update_config(quota_cpu=3)  # the new worker waits in STARTING
    task = asyncio.create_task(RollingUpdate(ops, bigger(), replace_wait_s=60, poll_s=0.1).run())

    def joining() -> bool:
        record = read_rolling(paths)
        return (
            record is not None
            and record.current is not None
            and (record.current.phase == "joining")
        )

    await wait_for(joining, timeout=30)
    view = await ops.observer.observe("demo")  # what `raycai status` and the TUI show
    assert not view.ready and view.updating is not None
    assert "0 of 2 worker(s) replaced; worker: worker-3 replacing worker-2" in view.updating
    task.cancel()  # the updating process dies mid-step
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (await ops.observer.observe("demo")).updating is None  # interrupted: not running
    record = read_rolling(paths)
    assert record is not None and record.current is not None
    assert interrupted(paths, record)
    new_app = record.current.new_app_id
    assert "worker-3" in await _workers(fake_ray)

    fake_ray.update_config(quota_cpu=None)
    record = await RollingUpdate(ops, bigger(), replace_wait_s=30, poll_s=0.1).run()
    assert record.state == "done"
    assert [r.new for r in record.replaced] == ["worker-3", "worker-2"]
    apps = {a.environment["RAYCAI_NODE"]: a.id for a in await cluster_apps(fake_ray)}
    assert apps["worker-3"] == new_app  # the interrupted step's worker was kept, not doubled
    assert nodes_of(await cluster_apps(fake_ray), "demo") == ["head", "worker-2", "worker-3"]


async def test_cli_shows_the_plan_refuses_a_ray_change_without_restart_head_and_applies(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    base = ["up", "demo", "--runtime", RUNTIME, "--workers", "2", "--memory", "1"]
    base += ["--head-cpu", "1", "--head-memory", "1"]
    refused = await asyncio.to_thread(
        raycai, fake_ray, *base, "--cpu", "1", "--ray-version", "2.61.0", check=False
    )
    assert refused.returncode == 1, refused.stderr
    assert "Ray 2.60.0 -> 2.61.0: workers of another Ray version cannot join" in refused.stderr
    assert "Rerun with --restart-head" in refused.stderr

    unconfirmed = await asyncio.to_thread(raycai, fake_ray, *base, "--cpu", "2", check=False)
    assert unconfirmed.returncode == 1
    assert "replace 2 worker(s) one at a time, in this order: worker-2 (idle)" in (
        unconfirmed.stderr
    )
    assert "rerun with --yes" in unconfirmed.stderr
    assert sorted((await _workers(fake_ray)).values()) == [1.0, 1.0]  # nothing changed

    applied = await asyncio.to_thread(raycai, fake_ray, *base, "--cpu", "2", "--yes")
    assert "update done (2 of 2 worker(s) replaced)" in applied.stderr
    assert sorted((await _workers(fake_ray)).values()) == [2.0, 2.0]
    status = await asyncio.to_thread(raycai, fake_ray, "status", "demo")
    assert "update: done (2 of 2 worker(s) replaced)" in status.stdout
    as_json = await asyncio.to_thread(raycai, fake_ray, "status", "demo", "--json")
    update = json.loads(as_json.stdout)["update"]
    assert update["state"] == "done" and update["planned"] == ["worker-2", "worker-1"]
    assert [(r["old"], r["new"]) for r in update["replaced"]] == [
        ("worker-2", "worker-3"),
        ("worker-1", "worker-2"),
    ]


async def test_restart_head_gives_the_head_its_new_settings_in_the_same_application(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    """A head-only change: the head's application takes the new size and restarts (a new
    incarnation: jobs that ran there are LOST by the ledger's rule); no worker is replaced,
    they rejoin the new head."""
    from raycai_core.cluster.records import read_head_address
    from raycai_core.cluster.rolling_plan import UpdateRefused

    ops, _ = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    before = read_head_address(paths)
    head_id = {m.node: m.app.id for m in await ops.members("demo")}["head"]
    spec = small_spec("demo", workers=2).model_copy(
        update={"head": small_spec("demo").head.model_copy(update={"cpu": 2.0})}
    )
    with pytest.raises(UpdateRefused, match="--restart-head"):
        await RollingUpdate(ops, spec).run()
    record = await RollingUpdate(ops, spec, restart_head=True, poll_s=0.1).run()
    assert record.state == "done" and record.head_done and record.replaced == []
    apps = {a.environment["RAYCAI_NODE"]: a for a in await cluster_apps(fake_ray)}
    assert apps["head"].id == head_id and apps["head"].cpu == 2.0
    after = read_head_address(paths)
    assert before is not None and after is not None
    assert after.incarnation != before.incarnation
    view = await ops.wait_ready("demo", timeout=60)  # the workers rejoined the new head
    assert view.ready and view.workers_joined == 2
