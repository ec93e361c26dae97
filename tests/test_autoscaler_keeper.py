"""One reconciler per cluster: while the head runs Ray's autoscaler, raycai's healing leaves
the cluster alone and a manual scale moves the autoscaler's bounds (pure parts, then the
CLI against the local workspace with no Ray: its quota keeps every application STARTING)."""

from __future__ import annotations

import json
import time

import pytest

from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.autoscaler import (
    KEPT_BY_AUTOSCALER,
    KEPT_BY_RAYCAI,
    autoscaler_running,
    keeper,
)
from raycai_core.cluster.desired import Desired, read_desired, write_desired
from raycai_core.cluster.healing import heal_reason, plan_heal
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import AutoscalerRecord, NodeRecord, read_node_record
from raycai_core.cluster.types import ClusterSummary
from raycai_core.cluster.view import merge_cluster
from raycai_core.launcher.autoscaling import autoscaler_files
from raycai_core.launcher.render import render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cluster_apps, nodes_of, raycai
from tests.test_cluster_view import app

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0


def head(state: str | None, phase: str = "running", age: float = 1.0) -> NodeRecord:
    autoscaler = AutoscalerRecord(state=state) if state else None
    return NodeRecord(
        node="head", role="head", phase=phase, updated_at=NOW - age, autoscaler=autoscaler
    )


def autoscaled(min_workers: int = 1, max_workers: int = 3) -> Desired:
    spec = spec_from_flags(
        name="demo", runtime="rt", min_workers=min_workers, max_workers=max_workers
    )
    return Desired(spec=spec, created_at=NOW - 9000, updated_at=NOW - 600)


def test_the_autoscaler_keeps_the_cluster_only_while_the_head_runs_it() -> None:
    assert autoscaler_running(head("running"), NOW)
    assert autoscaler_running(head("restarting"), NOW)  # a crash is not a handover
    assert not autoscaler_running(head("off"), NOW)  # no key: raycai keeps the minimum
    assert not autoscaler_running(head(None), NOW)  # a fixed-size cluster
    assert not autoscaler_running(head("running", age=300), NOW)  # the head launcher is gone
    assert not autoscaler_running(head("running", phase="ray-exited"), NOW)
    assert not autoscaler_running(None, NOW)
    assert keeper(autoscaled(), head("running"), NOW) == KEPT_BY_AUTOSCALER
    assert keeper(autoscaled(), head("off"), NOW) == KEPT_BY_RAYCAI


def test_healing_leaves_an_autoscaled_cluster_to_its_autoscaler() -> None:
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1", "APPLICATION_FAILED")]
    )["demo"]
    for state, healed in (("running", False), ("off", True)):
        records = {"head": head(state), "worker-1": NodeRecord("worker-1", "worker", "failed")}
        summary = ClusterSummary("demo", autoscaled(), members, 0, records)
        assert (heal_reason(summary, NOW) is not None) is healed
        view = merge_cluster("demo", autoscaled(), members, records, None, None, now=NOW)
        plan = plan_heal(view, view.desired, NOW)
        assert bool(plan.steps) is healed
        if not healed:
            assert ("worker-1", f"kept by {KEPT_BY_AUTOSCALER}") in plan.left_alone


def test_scale_moves_the_bounds_while_the_autoscaler_runs(
    idle_workspace: WorkspaceHandle,
) -> None:
    handle = idle_workspace
    spec = spec_from_flags(
        name="auto", runtime=RUNTIME, min_workers=0, max_workers=2, cpu=1, memory=1
    )
    paths = ClusterPaths(handle.project_dir, "auto")
    render_cluster(handle.project_dir, spec)
    write_desired(paths, spec)
    running = {"state": "running", "reason": None, "pid": 1, "restarts": 0}
    record = {"node": "head", "role": "head", "phase": "running", "autoscaler": running}
    paths.node_record("head").write_text(json.dumps({**record, "updated_at": time.time()}))
    assert read_node_record(paths, "head").autoscaler == AutoscalerRecord("running", pid=1)

    result = raycai(handle, "scale", "auto", "3")
    assert "autoscaling: min workers 0 -> 3, max 2 -> 3" in result.stderr + result.stdout
    bounds = read_desired(paths).spec.workers
    assert (bounds.min, bounds.max, bounds.autoscale) == (3, 3, True)
    config = json.loads((paths.root / "autoscaler.json").read_text())
    assert config["available_node_types"]["worker"]["min_workers"] == 3
    raycai(handle, "scale", "auto", "-2")
    bounds = read_desired(paths).spec.workers
    assert (bounds.min, bounds.max) == (1, 3)
    assert nodes_of(_apps(handle), "auto") == []  # the autoscaler creates them, not raycai

    # With the autoscaler off (no key on the head), raycai keeps the minimum itself.
    paths.node_record("head").write_text(
        json.dumps({**record, "autoscaler": {"state": "off"}, "updated_at": time.time()})
    )
    raycai(handle, "scale", "auto", "2")
    assert nodes_of(_apps(handle), "auto") == ["worker-1", "worker-2"]
    # down removes the autoscaler's files with the launchers'.
    raycai(handle, "down", "auto", "--yes")
    assert not [f for f in autoscaler_files(paths) if f.exists()]


def _apps(handle: WorkspaceHandle) -> list:
    import asyncio

    return asyncio.run(cluster_apps(handle))
