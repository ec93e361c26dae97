"""Why a node waits: an application the workspace has not run for longer than the threshold
(STARTING, its launcher silent since the application's start) names the quota and what the
cluster's waiting applications request. Pure view first, then the CLI against the local
workspace whose quota is too small for the spec (no Ray: nothing ever starts)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.readiness import progress_line
from raycai_core.cluster.records import NodeRecord
from raycai_core.cluster.view import SCHEDULE_WAIT_S, merge_cluster, schedule_threshold_s
from raycai_core.cml.models import Application
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import app_environment, app_name
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cli_env, raycai_argv
from tests.test_cluster_view import desired

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=timezone.utc)
QUOTA_TEXT = "the project may be out of quota"


def starting(node: str, waited_s: float, cpu: float = 2, memory: float = 4, gpu: int = 0):
    """`node`'s application, STARTING since `waited_s` before NOW."""
    since = NOW - timedelta(seconds=waited_s)
    return Application.model_validate(
        {
            "id": f"id-{node}",
            "name": app_name("demo", node),
            "status": "APPLICATION_STARTING",
            "environment": json.dumps(app_environment("demo", node)),
            "created_at": (since - timedelta(seconds=30)).isoformat(),
            "starting_at": since.isoformat(),
            "cpu": cpu,
            "memory": memory,
            "nvidia_gpu": gpu,
        }
    )


def view_of(apps: list[Application], records: dict[str, NodeRecord] | None = None, wait=60.0):
    members = group_by_cluster(apps)["demo"]
    return merge_cluster(
        "demo", desired(2), members, records or {}, None, None, now=NOW.timestamp(),
        schedule_wait=wait,
    )  # fmt: skip


def test_a_node_unscheduled_past_the_threshold_names_the_quota_and_the_request() -> None:
    view = view_of(
        [starting("head", 150), starting("worker-1", 150), starting("worker-2", 150, gpu=1)]
    )
    reason = view.reason(view.row("worker-1"))
    assert reason == (
        "waiting for the workspace to schedule it (2 min); the project may be out of quota: "
        "cpu 6, memory 12 GB, gpu 1 requested by the 3 waiting applications"
    )
    assert view.not_ready_reason is not None and QUOTA_TEXT in view.not_ready_reason
    assert view.not_ready_reason.count(QUOTA_TEXT) == 1  # one note for the three nodes
    line = progress_line(view)
    assert line.startswith("nodes joined Ray: 0/3; head, worker-1, worker-2: waiting for the")
    assert "schedule them (2 min)" in line


def test_below_the_threshold_or_with_a_fresh_record_a_node_says_no_quota() -> None:
    early = view_of([starting("head", 20), starting("worker-1", 20), starting("worker-2", 20)])
    assert all(QUOTA_TEXT not in (early.reason(r) or "") for r in early.rows)
    assert "quota or scheduling" in (early.reason(early.row("head")) or "")
    assert QUOTA_TEXT not in progress_line(early)

    # The launcher wrote after the application's start: the workspace did run it.
    fresh = NodeRecord(
        node="worker-1", role="worker", phase="checking-ray", updated_at=NOW.timestamp() - 5
    )
    ran = view_of([starting("worker-1", 600), starting("worker-2", 600, cpu=1, memory=1)],
                  {"worker-1": fresh})  # fmt: skip
    assert ran.row("worker-1").unscheduled_s is None
    assert QUOTA_TEXT not in (ran.reason(ran.row("worker-1")) or "")
    only = ran.reason(ran.row("worker-2"))
    assert only == (  # one waiting application: its own request, minutes whole
        "waiting for the workspace to schedule it (10 min); the project may be out of "
        "quota: cpu 1, memory 1 GB, gpu 0 requested"
    )
    # A record left by the previous run (before this start) does not count as written.
    stale = NodeRecord(
        node="worker-1", role="worker", phase="running", updated_at=NOW.timestamp() - 3600
    )
    old = view_of([starting("worker-1", 600)], {"worker-1": stale})
    assert QUOTA_TEXT in (old.reason(old.row("worker-1")) or "")


def test_the_threshold_is_a_minute_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYCAI_SCHEDULE_WAIT_S", raising=False)
    assert schedule_threshold_s() == SCHEDULE_WAIT_S == 60.0
    monkeypatch.setenv("RAYCAI_SCHEDULE_WAIT_S", "0.5")
    assert schedule_threshold_s() == 0.5
    monkeypatch.setenv("RAYCAI_SCHEDULE_WAIT_S", "soon")
    assert schedule_threshold_s() == 60.0


# --- the CLI on a workspace whose quota is too small for the spec -------------------------


def test_up_and_status_say_the_workspace_did_not_schedule_the_cluster(
    local_workspace: WorkspaceHandle,
) -> None:
    local_workspace.update_config(quota_cpu=4, quota_memory=0.5)  # each node asks 1 GB
    env = {**cli_env(local_workspace), "RAYCAI_SCHEDULE_WAIT_S": "0.5"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            raycai_argv(*args), env=env, capture_output=True, text=True, timeout=60
        )

    up = run("up", "demo", "--workers", "2", "--cpu", "1", "--memory", "1", "--head-cpu", "1",
             "--head-memory", "1", "--runtime", RUNTIME, "--timeout", "4")  # fmt: skip
    said = up.stdout + up.stderr
    assert up.returncode != 0, said  # the head never starts: up gives up at its deadline
    assert "head, worker-1, worker-2: waiting for the workspace to schedule them" in said, said
    assert "cpu 3, memory 3 GB, gpu 0 requested by the 3 waiting applications" in said

    status = run("status", "demo")
    assert status.returncode == 0, status.stderr
    for node in ("head", "worker-1", "worker-2"):
        line = next(x for x in status.stdout.splitlines() if x.lstrip().startswith(node + " "))
        assert " starting " in line
        assert "waiting for the workspace to schedule it (" in line, status.stdout
        assert "cpu 3, memory 3 GB, gpu 0 requested by the 3 waiting applications" in line
    nodes = json.loads(run("status", "demo", "--json").stdout)["nodes"]
    assert all(QUOTA_TEXT in node["reason"] for node in nodes)

    down = run("down", "demo", "--yes")
    assert down.returncode == 0, down.stderr
