"""P1: bring-up of head + 2 workers on the local workspace until all 3 nodes joined Ray,
against the best a person could do by hand in the same run: `ray start --head`, then both
workers in parallel the moment the head's GCS port accepts connections.

Target: ours / by-hand <= 1.05: medians over at least 5 alternating rounds (each round runs
both, the one that goes first alternating); the run-to-run range of each is printed.
Usage: python bench/p1_bringup.py [--rounds N] [--quick]   (--quick: one round, not judged
by the 5-round rule)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import Report, ensure_private_netns, load_average, median, short_tmpdir, spread

HEAD_IP, WORKER_IPS = "127.0.0.2", ("127.0.0.3", "127.0.0.4")
MEMORY_GB = 1.0
TARGET = 1.05
MIN_ROUNDS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def ray_argv(*extra: str, ip: str, name: str, temp: Path) -> list[str]:
    memory = int(MEMORY_GB * 2**30)
    store = int(memory * 0.3)
    return [
        "ray",
        "start",
        "--block",
        "--node-ip-address",
        ip,
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--memory",
        str(memory - store),
        "--object-store-memory",
        str(store),
        "--temp-dir",
        str(temp),
        "--node-name",
        name,
        "--dashboard-agent-listen-port",
        str(free_port()),
        *extra,
    ]


def accepts(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=0.05).close()
        return True
    except OSError:
        return False


def alive_nodes(url: str, token: str) -> int:
    try:
        answer = httpx.get(
            f"{url}/api/v0/nodes",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {token}"},
            timeout=1.0,
        )
        nodes = answer.json()["data"]["result"]["result"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return 0
    return sum(1 for n in nodes if n["state"] == "ALIVE")


def stop(processes: list[subprocess.Popen]) -> None:
    # SIGTERM to `ray start` itself (not its group): Ray drains, then exits.
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def by_hand(tmp: Path, round_no: int) -> float:
    token_file = tmp / f"token-{round_no}"
    token = secrets.token_hex(32)
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    gcs, dash = 6379, free_port()
    log = open(tmp / f"hand-{round_no}.log", "ab")  # noqa: SIM115 (closed below)
    spawn = {"env": env, "stdout": log, "stderr": subprocess.STDOUT, "start_new_session": True}
    started = time.monotonic()
    head = subprocess.Popen(
        ray_argv(
            "--head",
            "--port",
            str(gcs),
            "--dashboard-host",
            "0.0.0.0",
            "--dashboard-port",
            str(dash),
            ip=HEAD_IP,
            name="hand-head",
            temp=tmp / f"h{round_no}",
        ),
        **spawn,
    )
    processes = [head]
    try:
        while not accepts(HEAD_IP, gcs):
            time.sleep(0.01)
        for k, ip in enumerate(WORKER_IPS, 1):
            processes.append(
                subprocess.Popen(
                    ray_argv(
                        "--address",
                        f"{HEAD_IP}:{gcs}",
                        ip=ip,
                        name=f"hand-w{k}",
                        temp=tmp / f"w{k}{round_no}",
                    ),
                    **spawn,
                )
            )
        url = f"http://{HEAD_IP}:{dash}"
        while alive_nodes(url, token) < 3:
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop(processes)
        log.close()


async def ours(tmp: Path, round_no: int, runtime: str) -> float:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread
    from raycai_core.spec import spec_from_flags

    config = WorkspaceConfig(stop_grace_s=20.0)
    with run_workspace_in_thread(tmp / f"ws{round_no}", config) as handle:
        spec = spec_from_flags(
            name=f"p1r{round_no}",
            runtime=runtime,
            workers=2,
            cpu=1,
            memory=MEMORY_GB,
            head_cpu=1,
            head_memory=MEMORY_GB,
        )
        async with CMLClient(handle.credentials()) as cml:
            ops = ClusterManager(cml, handle.project_dir)
            started = time.monotonic()
            view = await ops.up(spec, timeout=300)
            elapsed = time.monotonic() - started
            assert view.ready and view.nodes_alive == 3
            await ops.down(spec.name)
            await ops.observer.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="one round each")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local.config import DEFAULT_RUNTIMES

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    rounds = 1 if args.quick else max(args.rounds, MIN_ROUNDS)
    hand_times: list[float] = []
    our_times: list[float] = []
    load_before = load_average()
    with short_tmpdir() as tmp:
        for round_no in range(rounds):
            # Alternate which goes first, so that a change of load hits both alike.
            if round_no % 2 == 0:
                hand_times.append(by_hand(tmp, round_no))
                our_times.append(asyncio.run(ours(tmp, round_no, runtime)))
            else:
                our_times.append(asyncio.run(ours(tmp, round_no, runtime)))
                hand_times.append(by_hand(tmp, round_no))
            print(
                f"round {round_no + 1}: by hand {hand_times[-1]:.2f} s, "
                f"raycai {our_times[-1]:.2f} s, ratio {our_times[-1] / hand_times[-1]:.3f}",
                file=sys.stderr,
            )
    ratios = [o / h for o, h in zip(our_times, hand_times, strict=True)]
    report = Report("P1 bring-up, head + 2 workers, until 3 nodes joined Ray")
    report.notes.append(f"{rounds} alternating round(s); medians; {load_before} at the start")
    report.notes.append(f"by hand {spread(hand_times)} s; raycai {spread(our_times)} s")
    report.notes.append(f"per-round ratio raycai / by hand {spread(ratios, 3)}")
    report.add(
        "by hand: ray start --head, workers at GCS accept (s)", median(hand_times), unit=" s"
    )
    report.add("raycai up on the local workspace (s)", median(our_times), unit=" s")
    report.add("ratio raycai / by hand (medians)", median(our_times) / median(hand_times), TARGET)
    report.finish()


if __name__ == "__main__":
    main()
