"""A real Ray cluster on the local workspace, driven through the `raycai` CLI.

up 1 head + 2 workers -> 3 ALIVE -> scale 3 -> 4 -> scale 1 -> 2 (removed apps and their
processes gone) -> down -> no apps and no Ray processes left. (A head that dies, in place or
with its pod: tests/serving/test_recovery_ray.py.)
"""

from __future__ import annotations

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_token
from raycai_core.local import WorkspaceHandle
from raycai_core.ray.client import RayClient
from tests.fixtures.workspace import session_pids, wait_for
from tests.helpers import SMALL_NODES, cluster_apps, ray_processes, raycai, status_json

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]


async def alive_names(handle: WorkspaceHandle, name: str) -> set[str]:
    paths = ClusterPaths(handle.project_dir, name)
    head = read_head_address(paths)
    if head is None:
        return set()
    async with RayClient(head.dashboard_url, token=read_token(paths)) as client:
        try:
            nodes = await client.nodes()
        except Exception:
            return set()
    return {n.node_name for n in nodes if n.alive}


async def test_up_scale_and_down_with_real_ray(local_workspace: WorkspaceHandle) -> None:
    handle = local_workspace
    name = "demo"
    up = raycai(handle, "up", name, "--workers", "2", *SMALL_NODES)
    assert "nodes joined Ray: 3/3" in up.stderr

    status = status_json(handle, name)
    assert status["ready"] and status["nodes_alive"] == 3
    # The dashboard stays behind CML's authentication: no app is public.
    assert not any(app.bypass_authentication for app in await cluster_apps(handle))
    assert status["ray_dashboard_url"] and status["head_address"]
    assert {n["ray_state"] for n in status["nodes"]} == {"ALIVE"}
    assert {n["app_status"] for n in status["nodes"]} == {"running"}
    # The Ray dashboard itself agrees, node names tying each Ray node to its app.
    assert await alive_names(handle, name) == {
        "raycai-demo-head",
        "raycai-demo-worker-1",
        "raycai-demo-worker-2",
    }

    raycai(handle, "scale", name, "3", "--wait")
    assert status_json(handle, name)["workers_joined"] == 3
    assert len(await alive_names(handle, name)) == 4

    before = {n["node"]: n["app_id"] for n in status_json(handle, name)["nodes"]}
    sessions = {node: handle.app_info(app_id)["pid"] for node, app_id in before.items()}
    scaled = raycai(handle, "scale", name, "1")
    removed = scaled.stdout.split("removed:", 1)[1].splitlines()[0].strip().split(", ")
    assert sorted(removed) == ["worker-2", "worker-3"]  # idle workers, highest index first
    listed = {a.environment.get("RAYCAI_NODE") for a in await cluster_apps(handle)}
    assert listed == {"head", "worker-1"}
    for node in removed:
        await wait_for(lambda node=node: not session_pids(sessions[node]), timeout=40)
    await wait_for(lambda: _count_alive(handle, name, 2), timeout=30)

    # The head's pod lost, and Ray's crashes inside it: tests/serving/test_recovery_ray.py.
    paths = ClusterPaths(handle.project_dir, name)
    down = raycai(handle, "down", name, "--yes")
    assert "deleted 2 application(s)" in down.stdout
    assert await cluster_apps(handle) == []
    await wait_for(lambda: not ray_processes(), timeout=60)
    assert not paths.cluster_json.exists() and not paths.auth_token.exists()
    assert paths.node_log("head").exists()  # launcher logs outlive the cluster
    again = raycai(handle, "down", name, "--yes")
    assert "nothing left to delete" in again.stdout


async def _count_alive(handle: WorkspaceHandle, name: str, count: int) -> bool:
    return len(await alive_names(handle, name)) == count
