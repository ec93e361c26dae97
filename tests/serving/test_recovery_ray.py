"""Clusters that recover by themselves (issue 18), on real Ray through the local workspace at
CML's platform restart delay (300 s, the default): whatever comes back within these tests'
deadlines came back inside its application, by its launcher.

On the serving package's cluster (tests/serving/conftest.py: head + 1 worker, the Serve
example deployed), in file order: the head's GCS killed, the head's raylet killed, Ray killed
on the worker, then (with a short platform delay: the one test that needs the platform's
restart) the head's whole application killed, as when its pod is lost. A job runs during
each crash.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.helpers import raycai, status_json
from tests.serving.conftest import NAME, Served

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

T = TypeVar("T")
# How often a wait asks raycai's CLI: each ask is a process of ~0.5 CPU-seconds, and at 0.5 s
# these waits cost the CI more than Ray's own recovery did.
CLI_EVERY = 2.0


class Cluster:
    def __init__(self, served: Served) -> None:
        self.served = served
        self.handle = served.handle
        self.paths = served.paths

    def record(self, node: str) -> dict[str, Any]:
        return json.loads(self.paths.node_record(node).read_text())

    def head(self) -> dict[str, Any]:
        return json.loads(self.paths.head_json.read_text())

    def app_id(self, node: str) -> str:
        nodes = {n["node"]: n for n in status_json(self.handle, NAME)["nodes"]}
        return str(nodes[node]["app_id"])

    def answers(self) -> bool:
        """The Serve route through the head's URL, with the workspace key and Ray's token."""
        url, host = self.served.ingress("sentiment", "?text=easy+and+fast")
        headers = {**host, **self.served.workspace_key(), **self.served.ray_token()}
        try:
            got = httpx.get(url, headers=headers, timeout=10)
        except httpx.HTTPError:
            return False
        return got.status_code == 200 and got.json().get("label") == "positive"

    def job(self, job_id: str) -> dict[str, Any]:
        jobs = json.loads(raycai(self.handle, "job", "list", NAME, "--json").stdout)
        return next((j for j in jobs if j.get("submission_id") == job_id), {})


@pytest.fixture(scope="module")
def cluster(serving: Served) -> Cluster:
    found = Cluster(serving)
    assert found.answers()
    return found


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


def group_member(pgid: int, program: str) -> int:
    """The pid of `program` (gcs_server, raylet) in `ray start`'s process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid and Path(argv[0].decode()).name == program:
            return int(entry.name)
    raise AssertionError(f"no {program} in process group {pgid}")


def submit_sleeper(cluster: Cluster, job_id: str) -> None:
    raycai(cluster.handle, "job", "submit", NAME, "--submission-id", job_id, "--",
           "python -c 'import time; time.sleep(3600)'")  # fmt: skip
    wait_until(
        lambda: cluster.job(job_id).get("status") == "RUNNING", 60, f"{job_id} running", CLI_EVERY
    )


def ready_with(cluster: Cluster, alive: int = 2) -> dict[str, Any] | None:
    """`raycai status` says the cluster is ready with `alive` nodes; asked only once the
    launchers' records (a file read) say that every node is up again."""
    phases = {node: cluster.record(node).get("phase") for node in ("head", "worker-1")}
    if phases != {"head": "running", "worker-1": "joined"}:
        return None
    status = status_json(cluster.handle, NAME)
    return status if status["ready"] and status["nodes_alive"] == alive else None


def kill_on_head_and_recover(cluster: Cluster, program: str, restarts: int) -> None:
    """kill -9 `program` of the head's Ray; everything comes back in place: the head's app
    never failed, the worker stayed attached (same Ray node id, never re-joined), the Serve
    route answers through the head's URL, the running job is listed with a status."""
    head_app = cluster.app_id("head")
    incarnation = cluster.head()["incarnation"]
    worker = cluster.record("worker-1")
    job_id = f"sleeper-{program}"
    submit_sleeper(cluster, job_id)

    killed_at = time.monotonic()
    os.kill(group_member(int(cluster.record("head")["ray_pid"]), program), signal.SIGKILL)
    wait_until(lambda: cluster.record("head")["ray_restarts"] == restarts, 30, "the head to notice")
    status = wait_until(lambda: ready_with(cluster), 90, "every node ALIVE again", CLI_EVERY)
    wait_until(cluster.answers, 60, "the Serve route to answer through the head's URL")
    took = time.monotonic() - killed_at
    print(f"\n{program} killed: every node ALIVE and Serve answering after {took:.1f} s")

    head = cluster.record("head")
    assert head["ray_restarts"] == restarts
    last = head["recoveries"][-1]
    assert last["state_kept"] is True and program in last["why"], last
    assert cluster.head()["incarnation"] == incarnation
    assert cluster.handle.app_info(head_app)["restarts"] == 0  # never the platform's restart
    after = cluster.record("worker-1")
    assert after["ray_node_id"] == worker["ray_node_id"]
    assert after["ray_restarts"] == worker["ray_restarts"] and after["phase"] == "joined"
    nodes = {n["node"]: n for n in status["nodes"]}
    assert nodes["worker-1"]["ray_node_id"] == worker["ray_node_id"]
    assert "restarted (state kept)" in raycai(cluster.handle, "status", NAME).stdout

    job = wait_until(lambda: cluster.job(job_id), 30, f"{job_id} listed", CLI_EVERY)
    assert job["status"] and job.get("message"), job
    raycai(cluster.handle, "job", "stop", NAME, job_id, check=False)


def test_a_killed_gcs_comes_back_in_place(cluster: Cluster) -> None:
    kill_on_head_and_recover(cluster, "gcs_server", restarts=1)


def test_a_killed_head_raylet_comes_back_in_place(cluster: Cluster) -> None:
    kill_on_head_and_recover(cluster, "raylet", restarts=2)


def test_ray_killed_on_a_worker_comes_back_in_place(cluster: Cluster) -> None:
    worker_app = cluster.app_id("worker-1")
    before = cluster.record("worker-1")
    os.kill(group_member(int(before["ray_pid"]), "raylet"), signal.SIGKILL)

    def rejoined() -> dict[str, Any] | None:
        record = cluster.record("worker-1")
        ok = record["phase"] == "joined" and record["ray_node_id"] != before["ray_node_id"]
        return record if ok and ready_with(cluster) else None

    record = wait_until(rejoined, 90, "the worker's Ray back in its application")
    assert record["ray_restarts"] == before["ray_restarts"] + 1
    assert "raylet" in record["recoveries"][-1]["why"]
    assert record["head_incarnation"] == before["head_incarnation"]
    assert cluster.handle.app_info(worker_app)["restarts"] == 0
    logs = record["recoveries"][-1]["logs"]
    assert logs and Path(logs, "raylet.out").exists()  # the crashed session's logs are kept


def test_a_lost_head_pod_comes_back_as_a_new_incarnation(cluster: Cluster) -> None:
    """The head's whole application killed: only the platform can restart it, on a new pod
    (short delay here: waiting CML's 300 s would prove nothing more). A new incarnation, the
    worker re-joins, the stored Serve config is re-applied, the job in flight is LOST."""
    cluster.handle.update_config(restart_delay_s=0.5)
    submit_sleeper(cluster, "sleeper-lost")
    old = cluster.head()
    head_app = cluster.app_id("head")
    os.killpg(cluster.handle.app_info(head_app)["pid"], signal.SIGKILL)

    new = wait_until(
        lambda: (h := cluster.head())["incarnation"] != old["incarnation"] and h, 60, "a new head"
    )
    assert new["ip"] != old["ip"]  # a new pod, a new address
    assert cluster.handle.app_info(head_app)["restarts"] >= 1  # the platform's restart
    wait_until(lambda: ready_with(cluster), 90, "the worker re-joined", CLI_EVERY)
    wait_until(cluster.answers, 90, "the Serve config re-applied and answering")
    head = cluster.record("head")
    assert head["serve_reapplied"]["apps"] == 2 and not head["serve_reapplied"].get("error")
    assert cluster.record("worker-1")["head_incarnation"] == new["incarnation"]
    status = raycai(cluster.handle, "status", NAME).stdout
    assert "Serve config re-applied (2 applications)" in status

    lost = wait_until(lambda: cluster.job("sleeper-lost"), 30, "the lost job listed", CLI_EVERY)
    assert lost["status"] == "LOST", lost
