"""Worker groups on real Ray with Ray's autoscaler (one workspace and one cluster for the
module; the tests run in order and each goes on from where the one before left the cluster).

Cluster `duo`: a 1-CPU head; group `data` (1 vCPU, 1 GB, custom resource `data`, min 1 max 2)
and group `gpu` (1 vCPU, 1 GB, one NVIDIA GPU, accelerator L40S with CML label id 7, min 0
max 1); idle timeout 5 s. Ray takes `--num-gpus 1` on a machine without GPUs and gives a
`num_gpus=1` task GPU id 0, so the GPU group's scheduling is real here. Last, the Ray logs
of the workers scaled down are still readable through `raycai logs --ray` (the launchers'
copies in the project, issue 20).

Covered elsewhere: `up` killed mid-way then rerun converging two groups (stand-in Ray,
tests/test_cluster_groups.py); the one-group `[workers]` shape on real Ray
(tests/test_autoscaler_ray.py, tests/test_healing.py, tests/test_work_ray.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raycai_core import ray_log_copies
from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_node_record, read_token
from raycai_core.cml.models import Application
from raycai_core.launcher import template
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from raycai_core.ray.client import RayClient
from tests.conftest import in_private_netns
from tests.fixtures.patience import Deadline
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cluster_apps, raycai

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

NAME = "duo"
IDLE_TIMEOUT_S = 5
AUTOSCALER_PASS_S = 2  # Ray's autoscaler updates every 2 s
FLAGS = (
    "--runtime", RUNTIME, "--head-cpu", "1", "--head-memory", "1",
    "--group", "data:min=1,max=2,cpu=1,memory=1,resource.data=1",
    "--group", "gpu:min=0,max=1,cpu=1,memory=1,gpu=1,accelerator=L40S,accelerator_label=7",
    "--idle-timeout", str(IDLE_TIMEOUT_S), "--timeout", "240",
)  # fmt: skip
# A Ray job run on the head: a task that needs the `data` resource, then one that needs a
# GPU; each reports where it ran (the node's labels and resources as Ray has them).
JOB = """\
import json, os, ray
ray.init()

def where():
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

def report(tag, found):
    node = next(n for n in ray.nodes() if n["NodeID"] == found["node_id"])
    found.update(labels=node.get("Labels", {}), resources=node["Resources"])
    print(tag, json.dumps(found), flush=True)

report("DATA", ray.get(ray.remote(num_cpus=0, resources={"data": 1})(where).remote()))
report("GPU", ray.get(ray.remote(num_gpus=1)(where).remote(), timeout=300))
"""
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def duo() -> Iterator[WorkspaceHandle]:
    """A workspace with cluster NAME up (head + data-1) and its autoscaler running."""
    if os.environ.get("RAYCAI_NETNS") != "0" and not in_private_netns():
        pytest.skip("needs a loopback-only network namespace: run with ./dev test")
    config = WorkspaceConfig(stop_grace_s=5.0, ready_poll_s=0.05)
    with (
        tempfile.TemporaryDirectory(prefix="gr-") as data,
        run_workspace_in_thread(Path(data) / "ws", config) as handle,
    ):
        raycai(handle, "up", NAME, *FLAGS)
        deadline = time.monotonic() + 60
        while (state := autoscaler_state(handle)) != "running":
            assert time.monotonic() < deadline, f"the autoscaler did not start: {state}"
            time.sleep(0.2)
        yield handle
        raycai(handle, "down", NAME, "--yes", check=False)


def paths_of(handle: WorkspaceHandle) -> ClusterPaths:
    return ClusterPaths(handle.project_dir, NAME)


def autoscaler_state(handle: WorkspaceHandle) -> str | None:
    record = read_node_record(paths_of(handle), "head")
    return record.autoscaler.state if record and record.autoscaler else None


def worker_apps(handle: WorkspaceHandle) -> dict[str, Application]:
    """The cluster's worker applications by node (`data-1`, `gpu-1`...)."""
    apps = asyncio.run(cluster_apps(handle))
    return {
        node: app
        for app in apps
        if app.environment.get("RAYCAI_CLUSTER") == NAME
        and (node := app.environment.get("RAYCAI_NODE", "?")) != "head"
    }


def of_group(nodes: Iterable[str], group: str) -> list[str]:
    return sorted(n for n in nodes if n.startswith(f"{group}-"))


def autoscaler_log(handle: WorkspaceHandle) -> str:
    return (paths_of(handle).logs_dir / "autoscaler.log").read_text()


def node_types(handle: WorkspaceHandle) -> dict[str, tuple[int, int]]:
    config = json.loads((paths_of(handle).root / "autoscaler.json").read_text())
    types = config["available_node_types"]
    return {name: (t["min_workers"], t["max_workers"]) for name, t in types.items()}


async def alive_ray_nodes(handle: WorkspaceHandle) -> dict[str, str | None]:
    """Alive Ray nodes: name -> their raycai/group label."""
    paths = paths_of(handle)
    head = read_head_address(paths)
    assert head is not None
    async with RayClient(head.dashboard_url, token=read_token(paths)) as ray:
        return {n.node_name: n.labels.get("raycai/group") for n in await ray.nodes() if n.alive}


def run_job(handle: WorkspaceHandle, script: Path) -> tuple[str, list[dict[str, Application]]]:
    """Run `script` as a Ray job on the head; its logs and every worker listing seen meanwhile."""
    paths = paths_of(handle)
    head, token = read_head_address(paths), read_token(paths)
    assert head is not None and token is not None
    seen: list[dict[str, Application]] = []
    with httpx.Client(
        base_url=head.dashboard_url,
        headers={"Authorization": f"Bearer {token.reveal()}"},
        timeout=30,
    ) as client:
        answer = client.post("/api/jobs/", json={"entrypoint": f"python {script}"})
        answer.raise_for_status()
        job = answer.json()["submission_id"]
        deadline = time.monotonic() + 300
        while (status := client.get(f"/api/jobs/{job}").json()["status"]) not in FINISHED:
            assert time.monotonic() < deadline, f"job still {status}"
            seen.append(worker_apps(handle))
            time.sleep(0.5)
        logs = client.get(f"/api/jobs/{job}/logs").json()["logs"]
    assert status == "SUCCEEDED", logs[-3000:]
    return logs, seen


def reported(logs: str, tag: str) -> dict[str, Any]:
    line = next(line for line in logs.splitlines() if line.startswith(f"{tag} "))
    return json.loads(line.split(" ", 1)[1])


def wait_workers(handle: WorkspaceHandle, wanted: dict[str, int], timeout: float) -> list[str]:
    """Poll until each group has the wanted number of worker applications; return them."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(worker_apps(handle))
        if {g: len(of_group(nodes, g)) for g in wanted} == wanted:
            return nodes
        assert time.monotonic() < deadline, f"workers {nodes}, wanted per group {wanted}"
        time.sleep(0.5)


def test_up_starts_each_groups_minimum_with_its_own_node_type(duo: WorkspaceHandle) -> None:
    assert sorted(worker_apps(duo)) == ["data-1"]  # gpu: min 0, nothing until there is demand
    assert node_types(duo) == {"head": (0, 0), "data": (1, 2), "gpu": (0, 1)}
    assert asyncio.run(alive_ray_nodes(duo)) == {
        f"raycai-{NAME}-head": None,
        f"raycai-{NAME}-data-1": "data",
    }


def test_a_gpu_task_grows_the_gpu_group_only_and_a_custom_resource_task_runs_on_its_group(
    duo: WorkspaceHandle,
) -> None:
    script = duo.project_dir / "where.py"
    script.write_text(JOB)
    log_before = len(autoscaler_log(duo))
    logs, seen = run_job(duo, script)

    data = reported(logs, "DATA")
    assert data["labels"]["raycai/group"] == "data"
    assert data["labels"]["raycai/node"] == "data-1"
    assert data["resources"]["data"] == 1 and "GPU" not in data["resources"]
    gpu = reported(logs, "GPU")
    assert gpu["labels"]["raycai/group"] == "gpu"
    # gpu-1, or gpu-2 when Ray's autoscaler replaced a first GPU worker that was slow to
    # join on a loaded machine (seen once in CI): a node of the GPU group either way.
    gpu_node = gpu["labels"]["raycai/node"]
    assert re.fullmatch(r"gpu-[12]", gpu_node), gpu_node
    assert gpu["gpu_ids"] == ["0"]
    assert gpu["resources"]["GPU"] == 1 and gpu["resources"]["accelerator_type:L40S"] == 1
    assert "data" not in gpu["resources"]
    # The GPU demand created one worker of the GPU group and none of the CPU group.
    ever = {node for listing in seen for node in listing}
    assert {n for n in ever if not n.startswith("gpu-")} == {"data-1"} and gpu_node in ever
    added = autoscaler_log(duo)[log_before:]
    assert "Adding 1 node(s) of type gpu." in added
    assert "of type data" not in added
    # The head's provider created it as the GPU group's application: its size and label.
    app = next(listing[gpu_node] for listing in seen if gpu_node in listing)
    assert (app.cpu, app.memory, app.nvidia_gpu) == (1, 1, 1)
    assert app.accelerator_label_id == "7"
    assert app.environment["RAYCAI_GROUP"] == "gpu"
    assert worker_apps(duo)["data-1"].accelerator_label_id in ("", "0")


def test_scale_of_the_cpu_group_moves_its_min_and_adds_a_cpu_worker_only(
    duo: WorkspaceHandle,
) -> None:
    result = raycai(duo, "scale", NAME, "data=+1", "--wait")
    said = result.stdout + result.stderr
    assert "group data: autoscaling: min workers 1 -> 2 (max 2)" in said
    assert "group gpu" not in said
    stored = read_desired(paths_of(duo))
    assert stored is not None
    data, gpu = stored.spec.group("data"), stored.spec.group("gpu")
    assert (data.min, data.max, gpu.min, gpu.max) == (2, 2, 0, 1)
    assert node_types(duo) == {"head": (0, 0), "data": (2, 2), "gpu": (0, 1)}
    nodes = sorted(worker_apps(duo))
    assert of_group(nodes, "data") == ["data-1", "data-2"]
    assert len(of_group(nodes, "gpu")) <= 1  # the GPU worker idles out meanwhile, none added
    alive = asyncio.run(alive_ray_nodes(duo))
    assert alive[f"raycai-{NAME}-data-2"] == "data"


def test_idle_workers_go_down_to_each_groups_own_min(duo: WorkspaceHandle) -> None:
    result = raycai(duo, "scale", NAME, "data=-1")
    assert "group data: autoscaling: min workers 2 -> 1 (max 2)" in result.stdout + result.stderr
    scaled = time.monotonic()
    nodes = wait_workers(duo, {"data": 1, "gpu": 0}, timeout=120)
    assert len(nodes) == 1
    deadline = time.monotonic() + 60
    while len(alive := asyncio.run(alive_ray_nodes(duo))) != 2:
        assert time.monotonic() < deadline, f"alive in Ray: {alive}"
        time.sleep(0.5)
    assert alive == {f"raycai-{NAME}-head": None, f"raycai-{NAME}-{nodes[0]}": "data"}
    # Ray's autoscaler logs its event summary ("Removing ...") at the end of the pass that
    # terminated the node, which may end after Ray listed the node gone.
    removals = ("Removing 1 nodes of type gpu (idle).", "Removing 1 nodes of type data (idle).")
    logged = Deadline(30, every=0.5)
    while not all(line in (log := autoscaler_log(duo)) for line in removals):
        assert not logged.passed(), log[-3000:]
        time.sleep(0.5)
    # The data worker left is idle too: once it has been idle past the timeout for two of
    # the autoscaler's passes, it is still there (the group stays at its min).
    while time.monotonic() < scaled + IDLE_TIMEOUT_S + 2 * AUTOSCALER_PASS_S + 1:
        assert sorted(worker_apps(duo)) == nodes
        time.sleep(0.5)
    assert sorted(worker_apps(duo)) == nodes


def test_a_worker_scaled_down_keeps_its_ray_logs_readable_through_raycai_logs(
    duo: WorkspaceHandle,
) -> None:
    """Issue 20: the workers the autoscaler removed above (the GPU worker, a data worker)
    are gone, yet their Ray logs are in the project: their launchers copied them as they
    grew and once more after Ray stopped, so the copy is all of Ray's file. (The local
    workspace leaves the node's temp dir behind, so the test can compare; a CML pod's goes.)"""
    paths = paths_of(duo)
    alive = set(worker_apps(duo))
    gone = [n for n in ray_log_copies.nodes(paths.logs_dir) if n != "head" and n not in alive]
    assert any(n.startswith("gpu-") for n in gone), gone
    node = next(n for n in gone if n.startswith("gpu-"))
    copy = ray_log_copies.find(paths.logs_dir, node, "raylet.out")
    assert copy is not None, ray_log_copies.files(paths.logs_dir, node)
    temp_dir = template.ray_temp_dir(os.path.realpath(duo.project_dir), NAME, node)
    source = Path(temp_dir) / copy.session / "logs" / "raylet.out"
    deadline = time.monotonic() + 30  # the launcher's last pass, after Ray stopped
    while copy.path.read_bytes() != source.read_bytes():
        assert time.monotonic() < deadline, f"{copy.path} is not all of {source}"
        time.sleep(0.5)
    result = raycai(duo, "logs", NAME, node, "--ray", "raylet.out", "-n", "3")
    assert result.stdout.splitlines() == source.read_text().splitlines()[-3:]
    assert f"logs/{copy.relative}" in result.stderr and "(node gone since" in result.stderr
