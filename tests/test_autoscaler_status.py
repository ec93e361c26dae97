"""The autoscaler's status: decisions read from its log, the one-line summary, JSON."""

from __future__ import annotations

from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.autoscaler_status import (
    Decision,
    build_status,
    group_line,
    parse_decisions,
    pending_text,
    status_to_json,
    summary_line,
)
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.records import AutoscalerRecord, NodeRecord
from raycai_core.cluster.view import merge_cluster
from raycai_core.ray.models import ClusterUsage, ResourceDemand
from raycai_core.spec import parse_spec, spec_from_flags
from tests.test_cluster_view import app

NOW = 1_800_000_000.0
P = "[autoscaler] INFO"
# What raycai_autoscaler.py writes (Ray's lines and the provider's), trimmed.
LOG = f"""\
2026-11-30T15:48:31.955Z {P} ray.autoscaler._private.autoscaler: StandardAutoscaler: Queue 2 new nodes for launch
2026-11-30T15:48:31.970Z {P} raycai_cml_provider: raycai-provider: created worker-1 (app gack-d8ya, raycai-grow-worker-1)
2026-11-30T15:48:32.006Z {P} raycai_cml_provider: raycai-provider: created worker-2 (app ly0v-vxup, raycai-grow-worker-2)
2026-11-30T15:48:32.006Z {P} ray.autoscaler._private.monitor: :event_summary:Adding 2 node(s) of type worker.
2026-11-30T15:48:48.170Z {P} ray.autoscaler._private.autoscaler: StandardAutoscaler: Terminating the node with id gack-d8ya and ip 127.0.0.3. (idle)
2026-11-30T15:48:48.170Z {P} ray.autoscaler._private.autoscaler: Node last used: Mon Nov 30 15:48:43 2026.
2026-11-30T15:48:48.171Z {P} ray.autoscaler._private.autoscaler: Draining 1 raylet(s).
2026-11-30T15:48:48.204Z {P} raycai_cml_provider: raycai-provider: deleting worker-1 (app gack-d8ya): asked by the autoscaler
2026-11-30T15:49:10.000Z {P} raycai_cml_provider: raycai-provider: deleting worker-2 (app ly0v-vxup): replacing it: application FAILED
"""  # noqa: E501


def test_decisions_name_the_worker_and_the_reason() -> None:
    decisions = parse_decisions(LOG.splitlines())
    assert [(d.action, d.node, d.reason) for d in decisions] == [
        ("launched", "worker-1", None),
        ("launched", "worker-2", None),
        ("drained", "worker-1", "idle"),
        ("terminated", "worker-1", "idle"),
        ("terminated", "worker-2", "replacing it: application FAILED"),
    ]
    assert decisions[0].at == 1796053711.97
    assert parse_decisions(["not a log line", ""]) == []


def _view(state: str | None, workers: int = 2):
    spec = spec_from_flags(name="demo", runtime="rt", min_workers=0, max_workers=4)
    desired = Desired(spec=spec, created_at=NOW - 100, updated_at=NOW - 100)
    members = group_by_cluster(
        [app("demo", "head")] + [app("demo", f"worker-{k}") for k in range(1, workers + 1)]
    )["demo"]
    autoscaler = AutoscalerRecord(state, reason="no key" if state == "off" else None)
    head = NodeRecord("head", "head", "running", updated_at=NOW - 1, autoscaler=autoscaler)
    records = {"head": head} if state else {}
    return merge_cluster("demo", desired, members, records, None, None, now=NOW)


def test_status_summary_and_json() -> None:
    usage = ClusterUsage({}, {}, [ResourceDemand("task", {"CPU": 1.0}, 3)], NOW)
    decisions = [Decision(NOW, "launched", "worker-2")]
    status = build_status(_view("running"), decisions, usage, now=NOW)
    assert status is not None and status.on
    assert (status.min, status.max, status.target) == (0, 4, 2)
    assert summary_line(status) == ("autoscaler running: 0 of 0..4 workers (target 2), 3 pending")
    data = status_to_json(status)
    assert data is not None and data["kept_by"] == "the cluster's autoscaler"
    assert data["pending"][0]["text"] == "3 task(s)/actor(s) {CPU: 1}"
    assert data["decisions"] == [
        {"at": NOW, "action": "launched", "node": "worker-2", "reason": None}
    ]

    off = build_status(_view("off"), [], None, "dashboard down", now=NOW)
    assert off is not None and not off.on
    assert summary_line(off) == "autoscaler off: no key"
    assert off.kept_by == "raycai healing (raycai-tui or raycai heal)"
    assert build_status(_view(None), [], now=NOW).state == "not started"
    fixed = merge_cluster(
        "demo",
        Desired(spec=spec_from_flags(name="demo", runtime="rt", workers=2)),
        [],
        {},
        None,
        None,
    )
    assert build_status(fixed, []) is None and summary_line(None) == ""


def test_an_autoscaled_cluster_is_ready_with_at_least_min_workers_joined() -> None:
    spec = spec_from_flags(name="demo", runtime="rt", min_workers=1, max_workers=4)
    members = group_by_cluster(
        [app("demo", "head")] + [app("demo", f"worker-{k}") for k in (1, 2, 3)]
    )["demo"]
    joined = {
        node: NodeRecord(node, "worker" if node != "head" else "head", phase, updated_at=NOW)
        for node, phase in (
            ("head", "running"),
            ("worker-1", "joined"),
            ("worker-2", "joined"),
            ("worker-3", "starting-ray"),  # added for demand, still joining
        )
    }
    view = merge_cluster("demo", Desired(spec=spec), members, joined, None, None, now=NOW)
    # 2 joined >= min 1; the third is the autoscaler's business (ready once Ray confirms)
    assert view.all_joined
    fixed = Desired(spec=spec_from_flags(name="demo", runtime="rt", workers=1))
    assert not merge_cluster("demo", fixed, members, joined, None, None, now=NOW).all_joined


def test_status_per_group_with_pending_demand_by_shape() -> None:
    spec = parse_spec(
        {
            "name": "demo",
            "head": {"runtime_identifier": "rt"},
            "workers": {
                "worker": {"min": 1, "max": 4, "cpu": 2, "memory": 4},
                "gpu": {"min": 0, "max": 2, "cpu": 4, "memory": 16, "nvidia_gpu": 1,
                        "accelerator": "L40S"},
                "fixed": {"count": 1, "cpu": 1, "memory": 2},
            },
        }
    )  # fmt: skip
    nodes = ["head", "worker-1", "worker-2", "gpu-1", "fixed-1"]
    members = group_by_cluster([app("demo", n) for n in nodes])["demo"]
    records = {
        n: NodeRecord(n, "head" if n == "head" else "worker", phase, updated_at=NOW - 1)
        for n, phase in zip(
            nodes, ["running", "joined", "joined", "starting-ray", "joined"], strict=True
        )
    }
    records["head"] = NodeRecord(
        "head", "head", "running", updated_at=NOW - 1, autoscaler=AutoscalerRecord("running")
    )
    desired = Desired(spec=spec, created_at=NOW - 100, updated_at=NOW - 100)
    view = merge_cluster("demo", desired, members, records, None, None, now=NOW)
    demand = [
        ResourceDemand("task", {"GPU": 1.0}, 2),
        ResourceDemand("task", {"CPU": 2.0}, 1),
        ResourceDemand("task", {"accelerator_type:H100": 1.0}, 1),
    ]
    usage = ClusterUsage({}, {}, demand, NOW)
    status = build_status(view, [Decision(NOW, "launched", "gpu-1")], usage, now=NOW)
    assert status is not None
    lines = [group_line(g) for g in status.groups]
    assert lines == [
        "worker: min 1, max 4, current 2, target 2",
        "gpu: min 0, max 2, current 0, target 1",
        "fixed: fixed 1, current 1, target 1",
    ]
    assert (status.min, status.max, status.current, status.target) == (2, 7, 3, 4)
    # Where each shape can go: groups whose node holds it and that may still grow.
    assert [pending_text(status, d) for d in demand] == [
        "2 task(s)/actor(s) {GPU: 1} -> gpu",
        "1 task(s)/actor(s) {CPU: 2} -> worker, gpu",
        "1 task(s)/actor(s) {accelerator_type:H100: 1} -> no group can hold it (or all are at max)",
    ]
    data = status_to_json(status)
    assert data is not None
    assert [g["name"] for g in data["groups"]] == ["worker", "gpu", "fixed"]
    assert data["groups"][1]["target_workers"] == 1 and data["pending"][0]["groups"] == ["gpu"]
    decisions = parse_decisions(
        [
            f"2026-11-30T15:48:31.970Z {P} raycai_cml_provider: raycai-provider: created gpu-3 "
            "(app ab-cd, raycai-grow-gpu-3)",
            f"2026-11-30T15:48:48.204Z {P} raycai_cml_provider: raycai-provider: deleting gpu-3 "
            "(app ab-cd): asked by the autoscaler",
        ]
    )
    assert [(d.action, d.node) for d in decisions] == [
        ("launched", "gpu-3"),
        ("terminated", "gpu-3"),
    ]
