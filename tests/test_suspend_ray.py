"""An idle cluster suspends itself and a job wakes it (real Ray, one head + one worker).

With `idle_suspend_minutes = 0.1` and no raycai process running, the head's idle check
suspends the cluster: cluster.json says suspended (by the head), every application is
STOPPED, none deleted. It stays so while Ray's autoscaler would have run (the worker group
autoscales with min = max = 1, so the provider was running when the suspend began) and while
`raycai heal --watch` runs at a 1 s interval: more than twice both periods (the autoscaler's
update interval is 2 s). Then `raycai job submit` says it resumes the cluster, waits until it
is ready, and the job succeeds.

First a job that runs longer than the idle period keeps it awake (real Ray's jobs API, as
the head asks it). A Serve application, a connected driver or a task or actor keeping a
cluster awake is shown by tests/test_suspend_units.py on Ray 2.60's own answers (captured
from a real head).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_node_record
from raycai_core.cml.models import Application, AppStatus
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from tests.fixtures.workspace import FAST_CONFIG, RUNTIME
from tests.helpers import ProcessWatcher, cli_env, cluster_apps, raycai, raycai_argv

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

NAME = "sleepy"
IDLE_MINUTES = 0.1  # the least the spec takes: 6 s, checked every 1.5 s
AUTOSCALER_INTERVAL_S = 2.0  # raycai_core.launcher.autoscaling.UPDATE_INTERVAL_S
HEAL_INTERVAL_S = 1.0
HOLD_S = 2 * max(AUTOSCALER_INTERVAL_S, HEAL_INTERVAL_S) + 1
SPEC = f"""
name = "{NAME}"
idle_suspend_minutes = {IDLE_MINUTES}

[head]
cpu = 1
memory = 1
runtime_identifier = "{RUNTIME}"

[workers]
cpu = 1
memory = 1
min = 1
max = 1
autoscale = true
"""


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkspaceHandle]:
    data_dir = tmp_path_factory.mktemp("workspace")
    with run_workspace_in_thread(data_dir, WorkspaceConfig(**FAST_CONFIG)) as handle:
        spec_file = handle.project_dir / "sleepy.toml"
        spec_file.write_text(SPEC)
        try:
            up = raycai(handle, "up", "--file", str(spec_file), "--timeout", "180", check=False)
            assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{_idle_log(handle)}"
            yield handle
        finally:
            raycai(handle, "down", NAME, "--yes", check=False)


def apps_of(handle: WorkspaceHandle) -> dict[str, Application]:
    return {
        a.environment["RAYCAI_NODE"]: a
        for a in asyncio.run(cluster_apps(handle))
        if a.environment.get("RAYCAI_CLUSTER") == NAME
    }


def test_an_idle_cluster_suspends_itself_and_a_job_wakes_it(handle: WorkspaceHandle) -> None:
    paths = ClusterPaths(handle.project_dir, NAME)
    before = {node: app.id for node, app in apps_of(handle).items()}
    assert sorted(before) == ["head", "worker-1"]

    # A running job keeps it awake past its idle period (the head asks real Ray's jobs API).
    busy_s = IDLE_MINUTES * 60 + 8
    sleeper = f"import time; time.sleep({busy_s:g})"
    raycai(
        handle, "job", "submit", NAME, "--submission-id", "sleeper", "--", "python", "-c", sleeper
    )
    awake_until = time.monotonic() + busy_s - 2
    while time.monotonic() < awake_until:
        desired = read_desired(paths)
        assert desired is not None and desired.state == "active", _idle_log(handle)
        time.sleep(0.5)
    assert {a.status for a in apps_of(handle).values()} == {AppStatus.RUNNING}

    started = time.monotonic()
    with ProcessWatcher() as watcher:
        deadline = time.monotonic() + 120
        while {a.status for a in apps_of(handle).values()} != {AppStatus.STOPPED}:
            assert time.monotonic() < deadline, (
                f"not suspended: {apps_of(handle)}\n{_idle_log(handle)}"
            )
            time.sleep(0.5)
    assert watcher.commands(b"raycai_core.cli") + watcher.commands(b"bin/raycai\0") == []
    print(f"suspended {time.monotonic() - started:.1f} s after the job's end")
    desired = read_desired(paths)
    assert desired is not None and desired.state == "suspended", _idle_log(handle)
    assert desired.suspension is not None and desired.suspension.by == "head"
    assert desired.suspension.reason == f"idle for {IDLE_MINUTES:g} min"
    assert "the cluster is suspended: stopping the autoscaler" in paths.node_log("head").read_text()

    # Stopped, not deleted; and nothing starts, replaces or deletes them meanwhile.
    healer = subprocess.Popen(
        raycai_argv(*f"heal {NAME} --watch --interval {HEAL_INTERVAL_S} --missing-grace 0".split()),
        env=cli_env(handle),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        until = time.monotonic() + HOLD_S
        while time.monotonic() < until:
            apps = apps_of(handle)
            assert {n: a.id for n, a in apps.items()} == before
            assert {a.status for a in apps.values()} == {AppStatus.STOPPED}
            time.sleep(0.5)
    finally:
        healer.terminate()
        healed, _ = healer.communicate(timeout=30)
    assert "restart" not in healed, healed

    print(f"held {HOLD_S:g} s: {time.monotonic() - started:.1f} s")
    woke = raycai(handle, "job", "submit", NAME, "--wait", "--", "python", "-c", "print('awake')")
    assert f"cluster {NAME} is suspended since" in woke.stderr, woke.stderr
    assert "resumed and ready" in woke.stderr
    assert "awake" in woke.stdout, woke.stdout
    print(f"job done: {time.monotonic() - started:.1f} s")
    # The same applications ran again (and, idle once more, may already sleep again).
    assert {n: a.id for n, a in apps_of(handle).items()} == before
    record = read_node_record(paths, "head")
    assert record is not None and (record.started_at or 0) > desired.suspension.at
    again = read_desired(paths)
    assert again is not None
    assert again.state == "active" or again.suspension.at > desired.suspension.at  # type: ignore[union-attr]


def _idle_log(handle: WorkspaceHandle) -> str:
    paths = ClusterPaths(handle.project_dir, NAME)
    try:
        text = (paths.logs_dir / "idle.log").read_text()
    except OSError:
        text = "(no idle.log)"
    try:
        record = json.loads(paths.node_record("head").read_text())
    except (OSError, ValueError):
        record = {}
    return f"idle.log:\n{text[-3000:]}\nhead record idle: {record.get('idle')}"
