"""Ray's autoscaler keeps a raycai cluster with no raycai process running (real Ray).

One workspace and one autoscaled cluster for the module (tests run in order): it grows for a
job and shrinks after it; its autoscaler survives being killed; with min 1 a worker deleted
through the API is replaced. (A head without the platform's key: the stand-in Ray shows it,
tests/test_autoscaler_without_key.py.) Small nodes (1 vCPU, 1 GB), idle timeout 5 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_node_record, read_token
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from raycai_core.ray.client import RayClient
from tests.conftest import in_private_netns
from tests.fixtures.workspace import wait_for
from tests.helpers import (
    SMALL_NODES,
    ProcessWatcher,
    cluster_apps,
    nodes_of,
    raycai,
    status_json,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

NAME = "grow"
BOUNDS = ("--min-workers", "0", "--max-workers", "2", "--idle-timeout", "5")
# Three bundles of 1 CPU on three different nodes: the 1-CPU head needs two more workers.
JOB = """\
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=300)

@ray.remote(num_cpus=1)
def node_id():
    return ray.get_runtime_context().get_node_id()

bundles = [PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i) for i in range(3)]
ids = ray.get([node_id.options(scheduling_strategy=b).remote() for b in bundles])
print("NODES", len(set(ids)))
"""


@pytest.fixture(scope="module")
def workspace() -> Iterator[WorkspaceHandle]:
    if os.environ.get("RAYCAI_NETNS") != "0" and not in_private_netns():
        pytest.skip("needs a loopback-only network namespace: run with ./dev test")
    config = WorkspaceConfig(stop_grace_s=5.0, ready_poll_s=0.05)
    with (
        tempfile.TemporaryDirectory(prefix="as-") as data,
        run_workspace_in_thread(Path(data) / "ws", config) as handle,
    ):
        yield handle


def raycai_commands(watcher: ProcessWatcher) -> list[str]:
    """The raycai CLI processes the watcher saw (there must be none)."""
    return watcher.commands(b"raycai_core.cli") + watcher.commands(b"bin/raycai\0")


def paths_of(handle: WorkspaceHandle, name: str = NAME) -> ClusterPaths:
    return ClusterPaths(handle.project_dir, name)


def head_autoscaler(handle: WorkspaceHandle, name: str = NAME) -> Any:
    record = read_node_record(paths_of(handle, name), "head")
    return record.autoscaler if record else None


def worker_apps(handle: WorkspaceHandle, name: str = NAME) -> list[str]:
    return [n for n in nodes_of(asyncio.run(cluster_apps(handle)), name) if n != "head"]


async def alive_ray_nodes(handle: WorkspaceHandle, name: str = NAME) -> set[str]:
    paths = paths_of(handle, name)
    head = read_head_address(paths)
    assert head is not None
    async with RayClient(head.dashboard_url, token=read_token(paths)) as ray:
        return {n.node_name for n in await ray.nodes() if n.alive}


def submit_job(handle: WorkspaceHandle, script: Path) -> tuple[str, httpx.Client]:
    paths = paths_of(handle)
    head = read_head_address(paths)
    token = read_token(paths)
    assert head is not None and token is not None
    client = httpx.Client(
        base_url=head.dashboard_url,
        headers={"Authorization": f"Bearer {token.reveal()}"},
        timeout=30,
    )
    answer = client.post("/api/jobs/", json={"entrypoint": f"python {script}"})
    answer.raise_for_status()
    return answer.json()["submission_id"], client


def test_grows_for_a_job_and_shrinks_after_with_no_raycai_command(
    workspace: WorkspaceHandle,
) -> None:
    handle = workspace
    raycai(handle, "up", NAME, *BOUNDS, *SMALL_NODES)
    deadline = time.monotonic() + 60
    while (state := head_autoscaler(handle)) is None or state.state != "running":
        assert time.monotonic() < deadline, f"the autoscaler did not start: {state}"
        time.sleep(0.2)
    assert worker_apps(handle) == []  # min 0: no worker until there is demand
    script = handle.project_dir / "spread.py"
    script.write_text(JOB)

    with ProcessWatcher() as watcher:
        job, client = submit_job(handle, script)
        most: list[str] = []
        while (status := client.get(f"/api/jobs/{job}").json()["status"]) not in (
            "SUCCEEDED",
            "FAILED",
            "STOPPED",
        ):
            most = max(most, worker_apps(handle), key=len)
            time.sleep(0.5)
        logs = client.get(f"/api/jobs/{job}/logs").json()["logs"]
        client.close()
        assert status == "SUCCEEDED", logs[-3000:]
        assert "NODES 3" in logs
        assert most == ["worker-1", "worker-2"]
        # Idle for 5 s: drained, and their applications deleted.
        deadline = time.monotonic() + 120
        while worker_apps(handle):
            assert time.monotonic() < deadline, f"workers still there: {worker_apps(handle)}"
            time.sleep(0.5)
    assert raycai_commands(watcher) == []
    assert asyncio.run(alive_ray_nodes(handle)) == {f"raycai-{NAME}-head"}
    log = (paths_of(handle).logs_dir / "autoscaler.log").read_text()
    assert "Adding 2 node(s) of type worker." in log
    assert "Removing 2 nodes of type worker (idle)." in log or log.count("(idle)") >= 2
    assert "created worker-1" in log and "deleting worker-2" in log


def test_a_killed_autoscaler_is_restarted_and_the_head_stays_up(
    workspace: WorkspaceHandle,
) -> None:
    handle = workspace
    before = head_autoscaler(handle)
    assert before is not None and before.state == "running" and before.pid
    head_started = read_head_address(paths_of(handle))
    os.kill(before.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = head_autoscaler(handle)
        if now.state == "running" and now.pid != before.pid and now.restarts > before.restarts:
            break
        assert time.monotonic() < deadline, f"not restarted: {now}"
        time.sleep(0.2)
    record = read_node_record(paths_of(handle), "head")
    assert record is not None and record.phase == "running"
    assert read_head_address(paths_of(handle)) == head_started  # the same head, not restarted
    assert asyncio.run(alive_ray_nodes(handle)) == {f"raycai-{NAME}-head"}
    head_log = paths_of(handle).node_log("head").read_text()
    assert "the autoscaler exited with code -9" in head_log


def test_min_one_replaces_a_worker_deleted_through_the_api(workspace: WorkspaceHandle) -> None:
    handle = workspace
    result = raycai(handle, "scale", NAME, "1", "--wait")
    assert "min workers 0 -> 1" in result.stdout + result.stderr
    assert worker_apps(handle) == ["worker-1"]
    apps = asyncio.run(cluster_apps(handle))
    first = next(a for a in apps if a.environment.get("RAYCAI_NODE") == "worker-1")

    async def delete_and_wait() -> None:
        async with CMLClient(handle.credentials()) as cml:
            await cml.delete_application(first.id)

        async def replaced() -> bool:
            now = await cluster_apps(handle)
            ids = {a.id for a in now if a.environment.get("RAYCAI_CLUSTER") == NAME}
            return first.id not in ids and len(ids) == 2

        await wait_for(replaced, timeout=60, interval=0.5)
        await wait_for(lambda: alive_count(handle), timeout=120, interval=0.5)

    with ProcessWatcher() as watcher:
        asyncio.run(delete_and_wait())
    assert raycai_commands(watcher) == []
    status = status_json(handle, NAME)
    auto = status["autoscaler"]
    assert (auto["state"], auto["min"], auto["max"]) == ("running", 1, 2)
    assert auto["kept_by"] == "the cluster's autoscaler"
    raycai(handle, "down", NAME, "--yes")


async def alive_count(handle: WorkspaceHandle) -> bool:
    return len(await alive_ray_nodes(handle)) == 2
