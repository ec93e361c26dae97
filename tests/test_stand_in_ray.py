"""The fast tests' stand-in Ray (tests/fixtures/stand_in_ray.py) through the real dashboard
client: what raycai reads from it has Ray 2.60's shapes. Plain processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardAuthError
from tests.fixtures.ray_nodes import free_port
from tests.fixtures.stand_in_ray import USAGE_FILE
from tests.fixtures.workspace import wait_for

pytestmark = pytest.mark.integration

STAND_IN = Path(__file__).resolve().parent / "fixtures" / "stand_in_ray.py"
HEAD_IP = "127.0.0.211"
GB = 2**30


class StandIn:
    def __init__(self, root: Path) -> None:
        self.token = secrets.token_hex(16)
        self.token_path = root / "auth_token"
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        self.gcs_port = free_port(HEAD_IP)
        self.dashboard_port = free_port("127.0.0.1")
        self.processes: list[subprocess.Popen[str]] = []
        # Installed as in a project's virtualenv: the usage file lives beside its bin/.
        self.venv = root / "venv"
        (self.venv / "bin").mkdir(parents=True)
        self.script = self.venv / "bin" / "ray"
        shutil.copyfile(STAND_IN, self.script)

    def ray(self, *args: str, token_path: Path | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path or self.token_path))
        process = subprocess.Popen(
            [sys.executable, str(self.script), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def start(self, name: str, ip: str, *, head: bool = False, **extra: str) -> subprocess.Popen:
        args = ["start", "--block", "--node-ip-address", ip, "--node-name", name]
        args += ["--num-cpus", "2" if head else "1", "--memory", str(GB)]
        args += ["--object-store-memory", str(GB // 4), "--labels", f"raycai/node={name}"]
        if head:
            args += ["--head", "--port", str(self.gcs_port)]
            args += ["--dashboard-port", str(self.dashboard_port)]
        else:
            args += ["--address", f"{HEAD_IP}:{self.gcs_port}"]
        return self.ray(*args, **extra)

    def join(self, name: str, ip: str) -> subprocess.Popen[str]:
        """A worker that joined: its `ray start` printed Ray's "started" line."""
        process = self.start(name, ip)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "Ray runtime started."
        return process


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    cluster = StandIn(tmp_path)
    try:
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_nodes_join_leave_drain_and_the_token_is_required(
    stand_in: StandIn, tmp_path: Path
) -> None:
    head_process = stand_in.start("c-head", HEAD_IP, head=True)
    assert head_process.stdout is not None
    assert head_process.stdout.readline().strip() == "Ray runtime started."
    one = stand_in.join("c-worker-1", "127.0.0.212")
    two = stand_in.join("c-worker-2", "127.0.0.213")
    wrong = tmp_path / "wrong_token"
    wrong.write_text("another")
    refused = stand_in.start("c-worker-3", "127.0.0.214", token_path=wrong)
    assert refused.wait(10) == 1
    assert "InvalidAuthToken" in (refused.stdout.read() if refused.stdout else "")

    url = f"http://127.0.0.1:{stand_in.dashboard_port}"
    async with RayClient(url, token=stand_in.token) as ray:
        head, *workers = await ray.nodes()
        assert head.is_head and head.alive and head.node_name == "c-head"
        assert head.node_ip == HEAD_IP and head.resources_total["CPU"] == 2.0
        assert head.labels["raycai/node"] == "c-head" and head.start_time is not None
        assert [(w.node_name, w.state) for w in workers] == [
            ("c-worker-1", "ALIVE"),
            ("c-worker-2", "ALIVE"),
        ]
        assert len(await ray.nodes(alive_only=True)) == 3
        usage = await ray.cluster_usage()
        assert usage.cpu.total == 4.0 and usage.cpu.used == 0.0
        assert usage.object_store_memory.total == 3 * (GB // 4)
        assert set(usage.by_node) == {head.node_id, *(w.node_id for w in workers)}
        (stand_in.venv / USAGE_FILE).write_text(json.dumps({"c-worker-2": {"CPU": 1}}))
        usage = await ray.cluster_usage()
        assert usage.cpu.used == 1.0 and usage.cpu.total == 4.0
        worker_2 = next(n for n in workers if n.node_name == "c-worker-2")
        assert usage.by_node[worker_2.node_id]["CPU"].used == 1.0
        assert usage.by_node[head.node_id]["CPU"].used == 0.0

        one.send_signal(signal.SIGTERM)
        assert one.wait(10) == 0

        async def worker_1_dead() -> bool:
            nodes = {n.node_name: n for n in await ray.nodes()}
            return nodes["c-worker-1"].state == "DEAD"

        await wait_for(worker_1_dead, 10)
        gone = next(n for n in await ray.nodes() if n.node_name == "c-worker-1")
        assert gone.state_message == "Expected termination: received SIGTERM" and gone.end_time

        drain = stand_in.ray(
            "drain-node",
            "--address",
            f"{HEAD_IP}:{stand_in.gcs_port}",
            "--node-id",
            worker_2.node_id,
            "--reason-message",
            "scale down",
        )
        assert drain.wait(10) == 0
        assert two.wait(10) == 0  # its `ray start` ends once drained
        drained = next(n for n in await ray.nodes() if n.node_name == "c-worker-2")
        assert drained.state == "DEAD" and "drained (scale down)" in (drained.state_message or "")
        assert len(await ray.nodes(alive_only=True)) == 1

    async with RayClient(url) as anonymous:
        with pytest.raises(RayDashboardAuthError, match="requires a Ray token"):
            await anonymous.nodes()
    async with RayClient(url, token="not-the-token") as other:
        with pytest.raises(RayDashboardAuthError, match="not this cluster's token"):
            await other.nodes()


def test_version_and_unsupported_commands(stand_in: StandIn) -> None:
    version = stand_in.ray("--version")
    assert version.wait(10) == 0
    assert version.stdout is not None and "2.60.0" in version.stdout.read()
    unknown = stand_in.ray("status")
    assert unknown.wait(10) == 2
