"""R3: a failed worker is seen in one observation and healed; R2: every worker rejoins a
restarted head on its own. Real Ray on the local workspace, driven through ClusterManager."""

from __future__ import annotations

import os
import signal
import time

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.records import read_head_address
from raycai_core.cluster.types import Progress
from raycai_core.cml.client import CMLClient
from raycai_core.cml.models import AppStatus
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME, wait_for
from tests.helpers import ray_processes

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


async def test_failed_and_missing_workers_are_healed_and_reported(
    local_workspace: WorkspaceHandle,
) -> None:
    handle = local_workspace
    events: list[Progress] = []
    spec = spec_from_flags(
        name="healme", runtime=RUNTIME, workers=2, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir, progress=events.append)
        try:
            view = await ops.up(spec, timeout=180)
            assert view.ready
            # The platform gives up at once, so only raycai's healing can bring it back.
            handle.update_config(restart_attempts=0)
            worker = view.row("worker-1")
            assert worker is not None and worker.app is not None
            os.killpg(handle.app_info(worker.app.app.id)["pid"], signal.SIGKILL)
            failed = await wait_for(
                lambda: _status(ops, "healme", "worker-1", AppStatus.FAILED), timeout=20
            )
            assert "application failed" in (failed.row("worker-1").not_ready_reason or "")

            other = view.row("worker-2")
            await cml.delete_application(other.app.app.id)  # someone deleted it by hand

            observed = await ops.observer.observe("healme")
            actions = await ops.heal("healme", observed)
            assert {(a.node, a.action) for a in actions} == {
                ("worker-1", "restarted"),
                ("worker-2", "recreated"),
            }
            assert any(e.step == "heal" and "worker-1: restarted" in e.message for e in events)
            healed = await ops.wait_ready("healme", timeout=90)
            assert healed.workers_joined == 2
            assert await ops.heal("healme") == []  # nothing left to do
        finally:
            await ops.down("healme")
            await ops.observer.aclose()
    await wait_for(lambda: not ray_processes(), timeout=60)


async def test_every_worker_rejoins_a_restarted_head(local_workspace: WorkspaceHandle) -> None:
    """R2 with two workers: within 30 s of the new head publishing its address."""
    handle = local_workspace
    spec = spec_from_flags(
        name="phoenix", runtime=RUNTIME, workers=2, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            view = await ops.up(spec, timeout=180)
            paths = ClusterPaths(handle.project_dir, "phoenix")
            old = read_head_address(paths)
            head = view.row("head")
            assert old is not None and head is not None and head.app is not None
            os.killpg(handle.app_info(head.app.app.id)["pid"], signal.SIGKILL)
            new = await wait_for(
                lambda: (a := read_head_address(paths)) and a.incarnation != old.incarnation and a,
                timeout=60,
            )
            published = time.time()
            rejoined = await wait_for(lambda: _ready(ops, "phoenix"), timeout=30, interval=0.5)
            elapsed = time.time() - published
            print(
                f"R2: both workers rejoined {elapsed:.1f} s after the new head "
                f"({new.gcs_address}) published"
            )
            assert rejoined.head.incarnation == new.incarnation
            assert rejoined.nodes_alive == 3
        finally:
            await ops.down("phoenix")
            await ops.observer.aclose()
    await wait_for(lambda: not ray_processes(), timeout=60)


async def _status(ops: ClusterManager, name: str, node: str, status: AppStatus):
    view = await ops.observer.observe(name, with_ray=False)
    row = view.row(node)
    return view if row is not None and row.app_status is status else None


async def _ready(ops: ClusterManager, name: str):
    view = await ops.observer.observe(name)
    return view if view.ready else None


async def test_a_lost_token_file_is_replaced_and_the_nodes_restarted(
    local_workspace: WorkspaceHandle,
) -> None:
    """Rerunning `up` after the token file was deleted gives a working cluster again."""
    handle = local_workspace
    spec = spec_from_flags(
        name="tokenless", runtime=RUNTIME, workers=1, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    paths = ClusterPaths(handle.project_dir, "tokenless")
    events: list[Progress] = []
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir, progress=events.append)
        try:
            await ops.up(spec, timeout=180)
            old = paths.auth_token.read_text()
            paths.auth_token.unlink()
            view = await ops.up(spec, timeout=180)
            assert view.ready and view.nodes_alive == 2
            assert paths.auth_token.read_text() != old
            assert any("token file was gone" in e.message for e in events)
        finally:
            await ops.down("tokenless")
            await ops.observer.aclose()
    await wait_for(lambda: not ray_processes(), timeout=60)
