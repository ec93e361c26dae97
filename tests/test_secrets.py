"""R6: the API key and the Ray token never leak, and the files that hold them are 0600.

A full run (up, status, logs, scale, down) on real Ray; then every artifact is searched:
command output, every file under the project and the workspace's data directory (the two
files that must hold a secret excepted, and checked for 0600), Ray's own session logs, and
the argv and environment of every process seen during the run. R7 is checked on the same
cluster while it runs (one real cluster for the module: Ray starts once).
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

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_head_address, read_node_record, read_token
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLAuthError
from raycai_core.credentials import Credentials, Secret
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardAuthError
from tests.fixtures.workspace import FAST_CONFIG, wait_for
from tests.helpers import SMALL_NODES, ProcessWatcher, ray_processes, raycai

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def ray_session_dirs() -> list[Path]:
    return [p for p in Path("/tmp").glob("rc-*") if p.is_dir()]


NAME = "secretive"


@dataclass
class FullRun:
    """The module's cluster, up and scaled by the CLI while every process was watched."""

    handle: WorkspaceHandle
    paths: ClusterPaths
    watcher: ProcessWatcher
    outputs: list[str] = field(default_factory=list)


def no_ray_left() -> None:
    deadline = time.monotonic() + 60
    while ray_processes():
        assert time.monotonic() < deadline, ray_processes()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    """up, status, list, logs and scale on one real cluster; `down` is part of the run too
    (test_no_secret_in_any_artifact_of_a_full_run, the module's last test), else it is done
    here at the end."""
    data = tmp_path_factory.mktemp("secrets") / "workspace"
    with (
        run_workspace_in_thread(data, WorkspaceConfig(**FAST_CONFIG)) as handle,
        ProcessWatcher() as watcher,
    ):
        run = FullRun(handle, ClusterPaths(handle.project_dir, NAME), watcher)
        try:
            for args in (
                # Autoscaled: the head's autoscaler acts with the workspace's workload key.
                ("up", NAME, "--min-workers", "1", "--max-workers", "2", *SMALL_NODES),
                ("status", NAME),
                ("status", NAME, "--json"),
                ("list",),
                ("logs", NAME, "head", "-n", "500"),
                ("logs", NAME, "worker-1", "--ray", "raylet.out", "-n", "50"),
                ("scale", NAME, "2", "--wait"),
            ):
                result = raycai(handle, *args)
                run.outputs += [result.stdout, result.stderr]
            yield run
        finally:
            raycai(handle, "down", NAME, "--yes", check=False)
            no_ray_left()


async def test_dashboard_and_workers_are_refused_without_the_token(full_run: FullRun) -> None:
    """R7 at the cluster level: the dashboard and joining the cluster need its token."""
    tmp = Path(tempfile.mkdtemp(prefix="in-"))
    paths = full_run.paths
    head = read_head_address(paths)
    assert head is not None
    for bad in (None, Secret("not-the-token")):
        async with RayClient(head.dashboard_url, token=bad) as client:
            with pytest.raises(RayDashboardAuthError):
                await client.nodes()
    raycai_nodes = {f"raycai-{NAME}-head", f"raycai-{NAME}-worker-1", f"raycai-{NAME}-worker-2"}
    # Workers without the token, or with another, are refused by the head...
    tokens = {"none": None, "wrong": "0" * 64}
    intruders = [
        _intruder(tmp, head.gcs_address, label, token, k)
        for k, (label, token) in enumerate(tokens.items(), start=5)
    ]
    outputs = await asyncio.gather(*(asyncio.to_thread(_refusal, p) for p in intruders))
    for output in outputs:
        assert "InvalidAuthToken" in output or "missing or incorrect" in output, output[-2000:]
    # ...while raycai's workers, which hold it, joined (scale 2 --wait) and stay.
    async with RayClient(head.dashboard_url, token=read_token(paths)) as client:
        names = {n.node_name for n in await client.nodes() if n.alive}
    assert names == raycai_nodes
    shutil.rmtree(tmp, ignore_errors=True)


async def test_no_secret_in_any_artifact_of_a_full_run(full_run: FullRun) -> None:
    handle, paths, watcher, outputs = (
        full_run.handle,
        full_run.paths,
        full_run.watcher,
        full_run.outputs,
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
    result = raycai(handle, "down", NAME, "--yes")
    outputs += [result.stdout, result.stderr]
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


async def test_exceptions_and_reprs_never_show_secrets(local_workspace: WorkspaceHandle) -> None:
    wrong = "wrong-key-" + "x" * 30
    creds = Credentials(
        host=local_workspace.url, api_key=Secret(wrong), project_id=local_workspace.project_id
    )
    async with CMLClient(creds) as cml:
        with pytest.raises(CMLAuthError) as caught:
            await cml.list_applications()
    for text in (str(caught.value), repr(caught.value), repr(creds), repr(cml), f"{creds}"):
        assert wrong not in text
    assert "API key was refused" in str(caught.value)

    token = Secret("t" * 64)
    client = RayClient("http://127.0.0.9:9", token=token)
    assert token.reveal() not in repr(client)
    await client.aclose()
    assert token.reveal() not in f"{token} {token!r} {[token]}"


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
