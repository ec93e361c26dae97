"""A rolling update on real Ray (one cluster: a head and 2 workers): changing the workers'
size replaces them one at a time while a job's tasks keep running. Sampled every second
from Ray's own node list, at least 2 workers are ALIVE throughout; the job succeeds. Each
task invocation leaves a mark, so a task Ray ran again (a retry) is seen and reported.

The plan, the stop on quota, going on after an interruption, the refusal of a Ray version
change without --restart-head and the head restart are tested with the stand-in Ray
(tests/test_rolling_standin.py, tests/test_rolling_plan.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_token
from raycai_core.cluster.rolling_state import read_rolling
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from raycai_core.ray.client import RayClient
from tests.conftest import in_private_netns
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cli_env, cluster_apps, raycai, raycai_argv

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

NAME = "roll"
FLAGS = (
    "--runtime", RUNTIME, "--head-cpu", "1", "--head-memory", "1",
    "--workers", "2", "--memory", "1", "--timeout", "240",
)  # fmt: skip
# Tasks of 1 CPU, 3 at a time (the cluster's 3 CPUs: two of them run on the workers), in
# rounds until the test says stop; each invocation leaves a mark named after its task.
JOB = """\
import os, socket, sys, time, ray
ray.init()
marks, stop = sys.argv[1], sys.argv[2]

@ray.remote(num_cpus=1)
def work(i):
    open(os.path.join(marks, f"{i}-{os.getpid()}-{time.time_ns()}"), "w").close()
    time.sleep(1.5)
    return ray.get_runtime_context().get_node_id()

i, nodes, deadline = 0, set(), time.time() + 200
while not os.path.exists(stop) and time.time() < deadline:
    nodes.update(ray.get([work.remote(i + k) for k in range(3)]))
    i += 3
print("TASKS", i, "NODES", len(nodes), flush=True)
"""
FINISHED = ("SUCCEEDED", "FAILED", "STOPPED")


@pytest.fixture(scope="module")
def cluster() -> Iterator[WorkspaceHandle]:
    if os.environ.get("RAYCAI_NETNS") != "0" and not in_private_netns():
        pytest.skip("needs a loopback-only network namespace: run with ./dev test")
    config = WorkspaceConfig(stop_grace_s=5.0, ready_poll_s=0.05)
    with (
        tempfile.TemporaryDirectory(prefix="roll-") as data,
        run_workspace_in_thread(Path(data) / "ws", config) as handle,
    ):
        raycai(handle, "up", NAME, *FLAGS, "--cpu", "1")
        yield handle
        raycai(handle, "down", NAME, "--yes", check=False)


def _replacing(paths: ClusterPaths) -> bool:
    """The update's first new worker exists (rolling.json names it)."""
    record = read_rolling(paths)
    return record is not None and record.current is not None and record.current.phase != "creating"


class Sampler(threading.Thread):
    """Ray's ALIVE workers of the cluster, every second, from the dashboard's node list."""

    def __init__(self, paths: ClusterPaths) -> None:
        super().__init__(daemon=True)
        self.paths = paths
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            count = asyncio.run(self.alive_workers())
            if count is not None:
                self.samples.append(count)
            self.stop.wait(1.0)

    async def alive_workers(self) -> int | None:
        head = read_head_address(self.paths)
        if head is None:
            return None
        try:
            async with RayClient(head.dashboard_url, token=read_token(self.paths)) as ray:
                nodes = await ray.nodes()
        except Exception:
            return None
        return sum(1 for n in nodes if n.alive and n.labels.get("raycai/group") == "worker")


def test_a_worker_size_update_keeps_two_workers_joined_and_the_job_succeeds(
    cluster: WorkspaceHandle,
) -> None:
    paths = ClusterPaths(cluster.project_dir, NAME)
    marks = cluster.project_dir / "marks"
    marks.mkdir()
    stop = cluster.project_dir / "stop-job"
    script = cluster.project_dir / "tasks.py"
    script.write_text(JOB)
    head, token = read_head_address(paths), read_token(paths)
    assert head is not None and token is not None
    sampler = Sampler(paths)
    sampler.start()
    with httpx.Client(
        base_url=head.dashboard_url,
        headers={"Authorization": f"Bearer {token.reveal()}"},
        timeout=30,
    ) as client:
        entrypoint = f"python {script} {marks} {stop}"
        answer = client.post("/api/jobs/", json={"entrypoint": entrypoint})
        answer.raise_for_status()
        job = answer.json()["submission_id"]
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()):  # the tasks run before the update starts
            assert time.monotonic() < deadline, client.get(f"/api/jobs/{job}").json()
            time.sleep(0.2)

        update = subprocess.Popen(
            raycai_argv("up", NAME, *FLAGS, "--cpu", "2", "--yes", "--replace-wait", "120"),
            env=cli_env(cluster),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while update.poll() is None and not _replacing(paths):
            time.sleep(0.5)
        during = raycai(cluster, "status", NAME, check=False).stdout  # the closing note's
        out, err = update.communicate(timeout=240)
        sampler.stop.set()
        sampler.join(timeout=10)
        stop.touch()
        deadline = time.monotonic() + 60
        while (status := client.get(f"/api/jobs/{job}").json()["status"]) not in FINISHED:
            assert time.monotonic() < deadline, f"job still {status}"
            time.sleep(0.5)
        logs = client.get(f"/api/jobs/{job}/logs").json()["logs"]

    assert update.returncode == 0, out + err
    assert "update done (2 of 2 worker(s) replaced)" in err, err
    assert status == "SUCCEEDED", logs[-3000:]
    invocations = Counter(mark.name.split("-", 1)[0] for mark in marks.iterdir())
    retried = sorted(int(task) for task, n in invocations.items() if n > 1)
    print(f"\nstatus during the update:\n{during}")
    print(f"workers ALIVE in Ray, sampled every second: {sampler.samples}")
    tasks = next((line for line in logs.splitlines() if line.startswith("TASKS")), "")
    print(f"update:\n{err}")
    print(f"job: {tasks}; tasks Ray ran again: {retried or 'none'}")
    assert sampler.samples and min(sampler.samples) >= 2, sampler.samples
    assert len(sampler.samples) >= 5  # the update took several samples' time
    apps = asyncio.run(cluster_apps(cluster))
    sizes = {
        a.environment["RAYCAI_NODE"]: a.cpu
        for a in apps
        if a.environment.get("RAYCAI_CLUSTER") == NAME and a.environment["RAYCAI_NODE"] != "head"
    }
    assert sorted(sizes.values()) == [2.0, 2.0], sizes
