"""Scale-down with drain and `raycai heal --watch`, end to end on the local workspace with
the real launchers and the stand-in Ray (tests/fixtures/stand_in_ray.py): fast, no Ray."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.records import read_node_record
from raycai_core.cluster.types import Progress, ScaleTarget, WorkersBusy
from raycai_core.local import WorkspaceHandle
from tests.fixtures.workspace import wait_for
from tests.helpers import cli_env, cluster_apps, nodes_of, raycai_argv
from tests.tui.support import client_for, fake_ray, set_ray_usage, small_spec

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def demo(fake_ray: WorkspaceHandle) -> AsyncIterator[tuple[ClusterManager, list[Progress]]]:
    """Cluster `demo` with two workers that joined the stand-in Ray."""
    events: list[Progress] = []
    async with client_for(fake_ray) as cml:
        ops = ClusterManager(cml, fake_ray.project_dir, progress=events.append)
        try:
            view = await ops.up(small_spec("demo", workers=2), timeout=60)
            assert view.ready and view.ray_known
            yield ops, events
        finally:
            await ops.down("demo")
            await ops.observer.aclose()


async def test_busy_workers_are_drained_before_removal_and_only_when_allowed(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, events = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    set_ray_usage(
        fake_ray, {"raycai-demo-worker-1": {"CPU": 1}, "raycai-demo-worker-2": {"CPU": 1}}
    )
    await wait_for(lambda: _busy(ops, "worker-2"), timeout=20)

    with pytest.raises(WorkersBusy) as refused:
        await ops.scale("demo", ScaleTarget(delta=-1), allow_busy=False)
    assert refused.value.nodes == ["worker-2"]
    desired = read_desired(paths)
    assert desired is not None and desired.spec.workers.count == 2  # nothing changed
    assert nodes_of(await cluster_apps(fake_ray), "demo") == ["head", "worker-1", "worker-2"]

    result = await ops.scale("demo", ScaleTarget(delta=-1), drain_timeout=20)
    assert (result.before, result.after, result.removed) == (2, 1, ["worker-2"])
    messages = [e.message for e in events if e.step in ("scale", "drain")]
    assert "removing worker-2 (busy)" in messages
    assert any(m.startswith("worker-2: draining") for m in messages)
    assert any(m.startswith("worker-2: drained") for m in messages)
    assert nodes_of(await cluster_apps(fake_ray), "demo") == ["head", "worker-1"]
    log = paths.node_log("worker-2").read_text()
    assert "drain-node" in log and "--reason DRAIN_NODE_REASON_PREEMPTION" in log
    assert "phase drained" in log
    record = read_node_record(paths, "worker-1")
    assert record is not None and record.phase == "joined"  # the other worker is untouched


async def _busy(ops: ClusterManager, node: str) -> bool:
    row = (await ops.observer.observe("demo")).row(node)
    return row is not None and row.ray is not None and not row.ray.idle


async def test_heal_watch_recreates_a_deleted_worker_until_interrupted(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, _ = demo
    argv = raycai_argv("heal", "demo", "--watch", "--interval", "0.5", "--missing-grace", "0")
    watcher = await asyncio.create_subprocess_exec(
        *argv,
        env=cli_env(fake_ray),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    said: list[bytes] = []

    async def collect(stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while line := await stream.readline():
            said.append(line)

    readers = [asyncio.ensure_future(collect(s)) for s in (watcher.stdout, watcher.stderr)]
    try:
        before = {m.node: m.app.id for m in await ops.members("demo")}
        await ops.cml.delete_application(before["worker-1"])  # someone deleted it by hand

        async def recreated() -> bool:
            now = {m.node: m.app.id for m in await ops.members("demo")}
            return now.get("worker-1") not in (None, before["worker-1"])

        await wait_for(recreated, timeout=40, interval=0.2)
        # The watcher says so once its action is done (the application exists before that).
        await wait_for(lambda: b"worker-1: recreated" in b"".join(said), timeout=30)
        watcher.send_signal(signal.SIGINT)
        await asyncio.wait_for(watcher.wait(), timeout=30)
        await asyncio.gather(*readers)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
        for reader in readers:
            reader.cancel()
    output = b"".join(said).decode()
    assert watcher.returncode == 130, output
    assert "worker-1: recreated (application missing)" in output
    assert "demo: stopped watching" in output


async def test_up_of_an_existing_cluster_waits_for_the_clusters_lock(
    fake_ray: WorkspaceHandle, demo: tuple[ClusterManager, list[Progress]]
) -> None:
    """`up` rewrites cluster.json: while a scale or a down holds the lock it waits, so it
    can never write `active` over a down's `deleting` or undo a scale."""
    from raycai_core.cluster.lock import cluster_lock

    ops, events = demo
    paths = ClusterPaths(fake_ray.project_dir, "demo")
    before = read_desired(paths)
    assert before is not None
    async with cluster_lock(paths):
        up = asyncio.create_task(ops.up(small_spec("demo", workers=3), timeout=60))
        await wait_for(lambda: any(e.step == "lock" for e in events), timeout=10)
        await asyncio.sleep(0.5)
        assert read_desired(paths) == before  # nothing written while the lock is held
        assert not up.done()
    view = await up
    assert view.ready and view.desired_workers == 3
    assert nodes_of(await cluster_apps(fake_ray), "demo") == [
        "head",
        "worker-1",
        "worker-2",
        "worker-3",
    ]
