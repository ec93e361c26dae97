"""Remote mode: `raycai up|status|logs|down` from a directory outside the project, through
the files API of the local workspace (which behaves as CML's: no overwrite, `(1)` names,
one-page listing): with real Ray, then the same under 20 % API faults with the stand-in Ray
(tests/fixtures/stand_in_ray.py: the faults' subject is the files API and raycai's
orchestration, and a second real cluster would cost CI's budget ~40 s)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from tests.helpers import SMALL_NODES, cli_env, cluster_apps, nodes_of, raycai_argv
from tests.tui.support import fake_ray

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.timeout(400)]

FAULTS = {  # R1's mix: 20 % of the API requests fail, some after the change was made
    "seed": 19,
    "drop_rate": 0.03,
    "lost_response_rate": 0.02,
    "error_rates": {429: 0.05, 500: 0.05, 503: 0.05},
    "retry_after_s": 0,  # Retry-After is test_reliability's; here: the files API's faults
}


def remote(handle: WorkspaceHandle, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`raycai *args` as from a laptop: CML_* set, no project directory, not in it."""
    env = cli_env(handle)
    del env["RAYCAI_PROJECT_DIR"]
    started = time.monotonic()
    done = subprocess.run(
        raycai_argv(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    print(f"raycai {' '.join(args[:2])}: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, f"raycai {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def copies(project_dir: Path) -> list[str]:
    """Files an upload stored as `name(k)` (it never overwrites)."""
    return [
        str(p.relative_to(project_dir))
        for p in project_dir.rglob("*(*)*")
        if ".venv" not in p.parts and p.is_file()
    ]


@pytest.mark.ray
async def test_remote_session_from_outside_the_project(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    await remote_session(local_workspace, tmp_path, "far", None)


@pytest.mark.slow
async def test_remote_session_under_api_faults(fake_ray: WorkspaceHandle, tmp_path: Path) -> None:
    await remote_session(fake_ray, tmp_path, "faulty", FAULTS)


async def remote_session(
    handle: WorkspaceHandle, tmp_path: Path, name: str, faults: dict | None
) -> None:
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    if faults:
        handle.set_faults(**faults)
        handle.reset_stats()
    up = remote(handle, laptop, "up", name, "--workers", "2", *SMALL_NODES)
    assert "remote: the project's files through the API" in up.stderr
    paths = ClusterPaths(handle.project_dir, name)
    # The launchers' own file: uploaded 0644 (the API sets no mode), made 0600 by them.
    assert paths.auth_token.stat().st_mode & 0o777 == 0o600
    nodes = ("head", "worker-1", "worker-2")
    logs_text = "".join(paths.node_log(node).read_text() for node in nodes)
    assert "made it 0600" in logs_text  # by whichever launcher looked first

    status = json.loads(remote(handle, laptop, "status", name, "--json").stdout)
    joined = {n["node"]: n["joined"] for n in status["nodes"]}
    assert joined == {"head": True, "worker-1": True, "worker-2": True}, status
    assert status["ready"] and status["remote"]  # by the launchers' records

    if not faults:  # once: a second `up` changes nothing, `list` sees the cluster
        again = remote(handle, laptop, "up", name, "--workers", "2", *SMALL_NODES)
        assert "head.py" not in again.stderr, again.stderr  # not uploaded again
        assert sorted(nodes_of(await cluster_apps(handle), name)) == list(nodes)
        (listed,) = json.loads(remote(handle, laptop, "list", "--json").stdout)
        assert (listed["name"], listed["workers_joined"]) == (name, 2), listed

    logs = remote(handle, laptop, "logs", name, "--all").stdout
    for node in nodes:
        assert any(line.startswith(node) for line in logs.splitlines()), logs[-2000:]

    stats = handle.stats()
    down = remote(handle, laptop, "down", name, "--yes")
    assert "deleted 3 application(s)" in down.stdout
    apps = await cluster_apps(handle)
    assert nodes_of(apps, name) == [], f"orphaned applications: {Counter(nodes_of(apps, name))}"
    assert not copies(handle.project_dir), copies(handle.project_dir)
    assert not paths.cluster_json.exists() and not paths.auth_token.exists()
    assert paths.node_log("head").is_file()  # the logs stay, as with a local down
    assert sorted(p.name for p in laptop.iterdir()) == []  # nothing written here
    if faults:
        handle.set_faults()
        injected = {k: v for k, v in stats["injected"].items() if k != "latency"}
        print(f"remote up..logs: {stats['total']} API requests, injected: {injected}")
        assert sum(injected.values()) >= 0.1 * stats["total"]  # the faults happened
