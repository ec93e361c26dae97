"""Faults at the API (R1) and interrupted commands (R4) on the local workspace, with the real
launchers and the stand-in Ray (tests/fixtures/stand_in_ray.py): the subject is raycai's
orchestration under faults, not Ray, whose part (joining, draining, recovering) the real-Ray
modules cover; with real Ray these two tests started 10 Ray nodes, a sixth of CI's budget.

Each check ends by counting applications per node: a duplicate or an orphan fails the test.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter

import pytest

from raycai_core.local import WorkspaceHandle
from tests.fixtures.patience import patience
from tests.fixtures.workspace import wait_for
from tests.helpers import (
    DELETE_ROUTE,
    SMALL_NODES,
    cli_env,
    cluster_apps,
    nodes_of,
    ray_processes,
    raycai,
    raycai_argv,
    status_json,
)
from tests.tui.support import fake_ray

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def assert_nodes(handle: WorkspaceHandle, name: str, expected: list[str]) -> None:
    apps = await cluster_apps(handle)
    nodes = nodes_of(apps, name)
    duplicates = [node for node, n in Counter(nodes).items() if n > 1]
    assert not duplicates, f"duplicate applications for {duplicates}"
    assert nodes == sorted(expected), nodes
    assert len({a.subdomain for a in apps}) == len(apps)


def run_until(handle: WorkspaceHandle, marker: str | tuple[str, ...], *args: str) -> str:
    """Start `raycai *args`, SIGKILL it once a stderr line contains `marker` (or one of
    several); its output."""
    markers = (marker,) if isinstance(marker, str) else marker
    process = subprocess.Popen(
        raycai_argv(*args),
        env=cli_env(handle),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if any(m in line for m in markers):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    output = "".join(seen)
    assert any(m in output for m in markers), f"never saw {markers}:\n{output}"
    return output


async def test_up_scale_down_complete_under_api_faults(fake_ray: WorkspaceHandle) -> None:
    """R1: 20% of API requests fail (429/500/503, dropped, lost responses) plus latency."""
    handle = fake_ray
    handle.set_faults(
        latency_s=0.02,
        jitter_s=0.05,
        seed=7,
        drop_rate=0.03,
        lost_response_rate=0.02,
        error_rates={429: 0.05, 500: 0.05, 503: 0.05},
    )
    name = "faulty"
    raycai(handle, "up", name, "--workers", "2", *SMALL_NODES)
    await assert_nodes(handle, name, ["head", "worker-1", "worker-2"])
    raycai(handle, "scale", name, "3", "--wait")
    await assert_nodes(handle, name, ["head", "worker-1", "worker-2", "worker-3"])
    assert status_json(handle, name)["workers_joined"] == 3
    raycai(handle, "scale", name, "1")
    await assert_nodes(handle, name, ["head", "worker-1"])
    stats = handle.stats()
    raycai(handle, "down", name, "--yes")
    await assert_nodes(handle, name, [])
    injected = {k: v for k, v in stats["injected"].items() if k != "latency"}
    print(f"API requests until scale 1: {stats['total']}, injected faults: {injected}")
    assert sum(injected.values()) >= 0.1 * stats["total"]  # the faults really happened
    handle.set_faults()
    await wait_for(lambda: not ray_processes(), timeout=60)


async def test_interrupted_up_scale_and_down_converge_when_rerun(
    fake_ray: WorkspaceHandle,
) -> None:
    """R4: SIGKILL the CLI at several points; rerunning converges with no duplicates."""
    handle = fake_ray
    name = "interrupted"
    up = ("up", name, "--workers", "3", *SMALL_NODES)

    run_until(handle, "head application raycai-interrupted-head created", *up)
    # The workers are requested right after the head: the kill may land before or among them.
    nodes = nodes_of(await cluster_apps(handle), name)
    assert "head" in nodes and len(set(nodes)) == len(nodes), nodes
    assert set(nodes) <= {"head", "worker-1", "worker-2", "worker-3"}, nodes

    run_until(handle, "waiting for the head to publish its address", *up)
    run_until(handle, "nodes joined Ray", *up)
    raycai(handle, *up)
    await assert_nodes(handle, name, ["head", "worker-1", "worker-2", "worker-3"])
    assert status_json(handle, name)["ready"]

    run_until(handle, "adding 2 worker(s)", "scale", name, "5")
    raycai(handle, "scale", name, "5")
    await assert_nodes(handle, name, ["head"] + [f"worker-{k}" for k in range(1, 6)])

    run_until(handle, "removing", "scale", name, "1")
    raycai(handle, "scale", name, "1")
    await assert_nodes(handle, name, ["head", "worker-1"])

    # Deletes are held, so that the kill lands before `down` is through whatever the load
    # (this reader can lag by seconds on a starved machine); the held ones go on after it.
    handle.set_faults(latency_s=patience(10.0), routes=[DELETE_ROUTE])
    run_until(handle, "deleting 2 application(s)", "down", name, "--yes")
    handle.set_faults()
    blocked = raycai(handle, *up, check=False)
    assert blocked.returncode != 0 and "being deleted" in blocked.stderr
    raycai(handle, "down", name, "--yes")
    await assert_nodes(handle, name, [])
    await wait_for(lambda: not ray_processes(), timeout=60)
