"""No work lost on scale-down, with real Ray: a task running on the worker being removed
finishes there (Ray drains the node first), then the worker's application is deleted."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import Progress, ScaleTarget, WorkersBusy
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME, wait_for
from tests.helpers import cluster_apps, nodes_of, ray_processes

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

# Runs on the test machine (the private namespace), as a Ray driver of the cluster.
DRIVER = """
import json, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

gcs, worker_id, marker, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ray.init(address=gcs, logging_level="ERROR")

@ray.remote(num_cpus=1, max_retries=3)
def work():
    node = ray.get_runtime_context().get_node_id()
    with open(marker, "a") as handle:
        handle.write(node + "\\n")
    time.sleep(seconds)
    return node

started = time.time()
strategy = NodeAffinitySchedulingStrategy(node_id=worker_id, soft=True)
ran_on = ray.get(work.options(scheduling_strategy=strategy).remote())
print(json.dumps({"ran_on": ran_on, "took": time.time() - started}), flush=True)
"""


async def test_a_task_on_the_removed_worker_finishes_before_its_app_goes(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = local_workspace
    name = "drainme"
    paths = ClusterPaths(handle.project_dir, name)
    spec = spec_from_flags(
        name=name, runtime=RUNTIME, workers=1, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    events: list[Progress] = []
    marker = tmp_path / "task-started"
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir, progress=events.append)
        try:
            view = await ops.up(spec, timeout=180)
            worker = view.row("worker-1")
            assert view.head is not None and worker is not None and worker.ray is not None
            driver_env = {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(paths.auth_token),
                "RAY_USAGE_STATS_ENABLED": "0",
                "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                "TMPDIR": str(tmp_path),
            }
            driver = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                DRIVER,
                view.head.gcs_address,
                worker.ray.node_id,
                str(marker),
                "15",
                env=driver_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await wait_for(marker.exists, timeout=90, interval=0.2)
                await wait_for(lambda: _busy(ops, name), timeout=30, interval=0.5)

                with pytest.raises(WorkersBusy):  # nothing changes unless allowed
                    await ops.scale(name, ScaleTarget(delta=-1), allow_busy=False)
                assert nodes_of(await cluster_apps(handle), name) == ["head", "worker-1"]

                result = await ops.scale(name, ScaleTarget(delta=-1), drain_timeout=90)
                assert result.removed == ["worker-1"] and result.after == 0
                output, _ = await asyncio.wait_for(driver.communicate(), timeout=120)
            finally:
                if driver.returncode is None:
                    driver.kill()
                    await driver.wait()
            text = output.decode(errors="replace")
            assert driver.returncode == 0, text
            answer = json.loads(text.strip().splitlines()[-1])
            # It ran to its end on the worker being removed: drained, not killed and retried.
            assert answer["ran_on"] == worker.ray.node_id, text
            assert marker.read_text().split() == [worker.ray.node_id]
            drained = [e.message for e in events if e.step == "drain"]
            assert any("worker-1: drained (its tasks finished" in m for m in drained), drained
            assert nodes_of(await cluster_apps(handle), name) == ["head"]
            log = paths.node_log("worker-1").read_text()
            assert "phase draining" in log and "phase drained" in log
        finally:
            await ops.down(name)
            await ops.observer.aclose()
    await wait_for(lambda: not ray_processes(), timeout=60)


async def _busy(ops: ClusterManager, name: str) -> bool:
    row = (await ops.observer.observe(name)).row("worker-1")
    return row is not None and row.ray is not None and not row.ray.idle
