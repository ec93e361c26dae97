"""`raycai suspend` / `raycai list` / `raycai run` on a suspended cluster, end to end on the
local workspace with the real launchers and the stand-in Ray (no Ray: fast)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_node_record
from raycai_core.cml.models import AppStatus
from raycai_core.local import WorkspaceHandle
from tests.fixtures.patience import Deadline
from tests.helpers import cli_env, cluster_apps, raycai
from tests.tui.support import create_cluster, fake_ray

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def statuses(handle: WorkspaceHandle, name: str) -> dict[str, AppStatus]:
    apps = asyncio.run(cluster_apps(handle))
    return {
        a.environment["RAYCAI_NODE"]: a.status
        for a in apps
        if a.environment.get("RAYCAI_CLUSTER") == name
    }


def test_suspend_lists_apart_and_run_resumes_first(fake_ray: WorkspaceHandle) -> None:
    handle = fake_ray
    asyncio.run(create_cluster(handle, "demo", workers=2))
    raycai(handle, "status", "demo")

    paths = ClusterPaths(handle.project_dir, "demo")
    stored = {"applications": [{"name": "a", "route_prefix": "/a", "import_path": "m:app"}]}
    paths.serve_json.write_text(json.dumps(stored))  # what `raycai serve deploy` keeps
    done = raycai(handle, "suspend", "demo", "--reason", "weekend")
    assert "demo suspended" in done.stderr, done.stderr
    assert statuses(handle, "demo") == {
        "head": AppStatus.STOPPED,
        "worker-1": AppStatus.STOPPED,
        "worker-2": AppStatus.STOPPED,
    }
    desired = read_desired(ClusterPaths(handle.project_dir, "demo"))
    assert desired is not None and desired.state == "suspended"
    again = raycai(handle, "suspend", "demo")  # rerun: nothing left to do, says so
    assert "suspended already" in again.stderr

    listed = raycai(handle, "list").stdout
    section = listed.split("Suspended")[1]
    assert "demo" in section and "3 stopped" in section and "weekend" in section
    rows = json.loads(raycai(handle, "list", "--json").stdout)
    (row,) = rows
    assert row["state"] == "suspended" and row["suspended_reason"] == "weekend"

    refused = raycai(handle, "scale", "demo", "3", check=False)  # would mark it active
    assert refused.returncode != 0 and "is suspended: `raycai resume demo` first" in refused.stderr
    status = raycai(handle, "status", "demo").stdout
    assert status.startswith("cluster demo: SUSPENDED (suspended since "), status
    woke = raycai(handle, "run", "demo", "--", "true")
    assert "cluster demo is suspended since" in woke.stderr and "weekend" in woke.stderr
    assert "resumed and ready" in woke.stderr
    deadline = Deadline(30, every=0.2)  # ready is Ray's word; the platform's status follows
    while set(statuses(handle, "demo").values()) != {AppStatus.RUNNING}:
        assert not deadline.passed(), statuses(handle, "demo")
        time.sleep(0.2)
    resumed = read_desired(ClusterPaths(handle.project_dir, "demo"))
    assert resumed is not None and resumed.state == "active"
    # The head knows its last run ended suspended: it deploys the stored Serve config again.
    while not _reapplied(paths):
        assert not deadline.passed(), paths.node_log("head").read_text()[-2000:]
        time.sleep(0.2)

    # raycai.connect does the same before Ray Client connects (its wake-up, without Ray).
    raycai(handle, "suspend", "demo")
    code = "import raycai._connect as c; c._wake('demo', None)"
    woke = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(handle), capture_output=True, text=True
    )
    assert woke.returncode == 0 and "resumed and ready" in woke.stderr, woke.stderr
    assert read_desired(paths).state == "active"  # type: ignore[union-attr]
    raycai(handle, "down", "demo", "--yes")


def _reapplied(paths: ClusterPaths) -> int:
    record = read_node_record(paths, "head")
    done = record.serve_reapplied if record is not None else None
    return done.apps if done is not None and not done.error else 0
