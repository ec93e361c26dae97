"""Ray's autoscaler keeps a raycai cluster with no raycai process running (real Ray), and
no secret leaks from a whole run of the CLI on it (R6, R7).

One workspace and one autoscaled cluster for the module (tests run in order): it grows for a
job and shrinks after it; its autoscaler survives being killed; with min 1 a worker deleted
through the API is replaced; the CLI reads it and scales it to 2; the dashboard and Ray
refuse whoever lacks its token (R7); after `down`, no secret is found in any command's
output, file or process seen during the module (R6: every process is watched from the
first `up`). (A head without the platform's key: the stand-in Ray shows it,
tests/test_autoscaler_without_key.py.) Small nodes (1 vCPU, 1 GB), idle timeout 5 s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_node_record, read_token
from raycai_core.cml.client import CMLClient
from raycai_core.credentials import Secret
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardAuthError
from tests.conftest import in_private_netns
from tests.fixtures.workspace import wait_for
from tests.helpers import (
    SMALL_NODES,
    ProcessWatcher,
    cluster_apps,
    nodes_of,
    ray_processes,
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


@dataclass
class Watched:
    """Every process alive during the module's run, and the output of its raycai commands."""

    watcher: ProcessWatcher
    outputs: list[str] = field(default_factory=list)

    def raycai(self, handle: WorkspaceHandle, *args: str) -> subprocess.CompletedProcess[str]:
        result = raycai(handle, *args)
        self.outputs += [result.stdout, result.stderr]
        return result


@pytest.fixture(scope="module", autouse=True)
def watched(workspace: WorkspaceHandle) -> Iterator[Watched]:
    with ProcessWatcher() as watcher:
        yield Watched(watcher)


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
    workspace: WorkspaceHandle, watched: Watched
) -> None:
    handle = workspace
    watched.raycai(handle, "up", NAME, *BOUNDS, *SMALL_NODES)
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


def test_min_one_replaces_a_worker_deleted_through_the_api(
    workspace: WorkspaceHandle, watched: Watched
) -> None:
    handle = workspace
    result = watched.raycai(handle, "scale", NAME, "1", "--wait")
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


async def alive_count(handle: WorkspaceHandle) -> bool:
    return len(await alive_ray_nodes(handle)) == 2


def test_cli_reads_the_cluster_and_scales_it_to_two(
    workspace: WorkspaceHandle, watched: Watched
) -> None:
    handle = workspace
    worker = worker_apps(handle)[0]
    for args in (
        ("status", NAME),
        ("status", NAME, "--json"),
        ("list",),
        ("logs", NAME, "head", "-n", "500"),
        ("logs", NAME, worker, "--ray", "raylet.out", "-n", "50"),
        ("scale", NAME, "2", "--wait"),
    ):
        watched.raycai(handle, *args)
    assert len(worker_apps(handle)) == 2


async def test_dashboard_and_workers_are_refused_without_the_token(
    workspace: WorkspaceHandle,
) -> None:
    """R7 at the cluster level: the dashboard and joining the cluster need its token."""
    tmp = Path(tempfile.mkdtemp(prefix="in-"))
    paths = paths_of(workspace)
    head = read_head_address(paths)
    assert head is not None
    for bad in (None, Secret("not-the-token")):
        async with RayClient(head.dashboard_url, token=bad) as client:
            with pytest.raises(RayDashboardAuthError):
                await client.nodes()
    workers = await asyncio.to_thread(worker_apps, workspace)
    assert len(workers) == 2
    raycai_nodes = {f"raycai-{NAME}-{node}" for node in ["head", *workers]}
    # Workers without the token, or with another, are refused by the head...
    tokens = {"none": None, "wrong": "0" * 64}
    intruders = [
        _intruder(tmp, head.gcs_address, label, token, k)
        for k, (label, token) in enumerate(tokens.items(), start=5)
    ]
    outputs = await asyncio.gather(*(asyncio.to_thread(_refusal, p) for p in intruders))
    for output in outputs:
        assert "InvalidAuthToken" in output or "missing or incorrect" in output, output[-2000:]
    # ...while raycai's workers, which hold it, joined and stay.
    async with RayClient(head.dashboard_url, token=read_token(paths)) as client:
        names = {n.node_name for n in await client.nodes() if n.alive}
    assert names == raycai_nodes
    shutil.rmtree(tmp, ignore_errors=True)


async def test_no_secret_in_any_artifact_of_the_modules_run(
    workspace: WorkspaceHandle, watched: Watched
) -> None:
    """R6: after everything above and `down`, every artifact is searched: command output,
    every file under the project and the workspace's data directory (the files that must
    hold a secret excepted, and checked for 0600), Ray's own session logs, and the argv and
    environment of every process seen during the module's run."""
    handle, paths, watcher, outputs = (
        workspace,
        paths_of(workspace),
        watched.watcher,
        watched.outputs,
    )
    key = handle.api_key
    token = read_token(paths)
    assert token is not None
    head = read_node_record(paths, "head")
    assert head is not None and head.autoscaler is not None
    assert head.autoscaler.state == "running"
    secret_files = {paths.auth_token}
    artifacts = files_under(handle.project_dir, handle.data_dir) + [
        f for d in ray_session_dirs() for f in d.rglob("*") if f.is_file()
    ]
    contents = {f: f.read_bytes() for f in artifacts if f.stat().st_size < 50_000_000}
    modes = {f: stat.S_IMODE(f.stat().st_mode) for f in contents}
    watched.raycai(handle, "down", NAME, "--yes")
    await wait_for(lambda: not ray_processes(), timeout=60)
    watcher.stop()

    token_value = token.reveal().encode()
    key_value = key.encode()
    assert len(token_value) >= 32 and len(key_value) >= 16
    for text in outputs:
        assert token.reveal() not in text and key not in text
    # The token file and the workspace's own records hold secrets: 0600 and nowhere else.
    holders = {f for f, data in contents.items() if token_value in data or key_value in data}
    workspace_records = {f for f in holders if f.parent == handle.data_dir}
    assert paths.auth_token in holders  # the search does find a secret where one is
    assert holders - workspace_records <= secret_files, sorted(map(str, holders))
    for file in holders:
        assert modes[file] == 0o600, file
    scripts = [paths.script("head"), paths.script("worker"), paths.launcher_json]
    assert all(f in contents and token_value not in contents[f] for f in scripts)
    # Processes: the token never in argv or any environment; the key only in the
    # environment of the CLI processes this test started (CML_API_KEY, as a user would).
    for (pid, _), data in watcher.seen.items():
        assert token_value not in data, f"token visible in /proc/{pid}"
        cmdline = data.split(b"\n", 1)[0]
        assert key_value not in cmdline, f"API key in the argv of {pid}"
        if b"raycai_core.cli" not in cmdline:
            assert key_value not in data, f"the user's API key in the environment of {pid}"
    # The workload key is the platform's own (CDSW_APIV2_KEY in every app, as on CML): in
    # the apps' environment and the workspace's records, never in a file raycai writes.
    workload = handle.workload_key.encode()
    assert workload != key_value
    assert any(workload in data for data in watcher.seen.values())
    in_files = {f for f, data in contents.items() if workload in data}
    assert in_files <= {f for f in in_files if f.parent == handle.data_dir}, sorted(in_files)
    assert not any(workload in data.split(b"\n", 1)[0] for data in watcher.seen.values())


def _intruder(
    tmp: Path, address: str, label: str, token: str | None, k: int
) -> subprocess.Popen[str]:
    env = {key: v for key, v in os.environ.items() if not key.startswith("RAY_AUTH")}
    if token is not None:
        token_file = tmp / f"{label}.token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    argv = [
        "ray",
        "start",
        "--block",
        "--address",
        address,
        "--node-ip-address",
        f"127.0.0.{200 + k}",
        "--num-cpus",
        "1",
        "--temp-dir",
        str(tmp / label),
        "--dashboard-agent-listen-port",
        str(52000 + k),
        "--node-name",
        f"intruder-{label}",
    ]
    return subprocess.Popen(
        argv,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _refusal(process: subprocess.Popen[str]) -> str:
    """The intruder's output until it is refused (then it is stopped), or until it exits."""
    lines = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        lines.append(line)
        if "InvalidAuthToken" in line or "missing or incorrect" in line:
            break
        if time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return "".join(lines)


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def ray_session_dirs() -> list[Path]:
    return [p for p in Path("/tmp").glob("rc-*") if p.is_dir()]
