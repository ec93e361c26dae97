"""Merging apps, launcher records and Ray nodes into one view; choosing workers to remove."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from raycai_core.cluster.apps import as_cluster_app, group_by_cluster
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.healing import missing_workers as _missing_nodes
from raycai_core.cluster.plan import removal_order
from raycai_core.cluster.records import HeadAddress, NodeRecord
from raycai_core.cluster.view import RayNodeInfo, merge_cluster
from raycai_core.cml.models import Application
from raycai_core.naming import app_environment, app_name
from raycai_core.ray.matching import node_labels
from raycai_core.spec import spec_from_flags

NOW = datetime.now(tz=timezone.utc)


def app(cluster: str, node: str, status: str = "APPLICATION_RUNNING") -> Application:
    import json

    return Application.model_validate(
        {
            "id": f"id-{cluster}-{node}",
            "name": app_name(cluster, node),
            "status": status,
            "environment": json.dumps(app_environment(cluster, node)),
            "created_at": NOW.isoformat(),
            "running_at": NOW.isoformat(),
            "cpu": 2,
            "memory": 4,
        }
    )


def ray(
    cluster: str, node: str, state: str = "ALIVE", used_cpu: float = 0.0, start: float = 1.0
) -> RayNodeInfo:
    """A Ray node of `node`'s launcher, started `start` s after its application's creation."""
    return RayNodeInfo(
        node_id=f"ray-{node}-{start}",
        node_name=app_name(cluster, node),
        state=state,
        cpu=(used_cpu, 2.0),
        memory=(0.0, 4e9),
        start_time=NOW.timestamp() + start,
        labels=node_labels(cluster, node),
    )


def record(node: str, phase: str, error: str | None = None) -> NodeRecord:
    return NodeRecord(node=node, role="worker", phase=phase, error=error, updated_at=time.time())


def desired(count: int) -> Desired:
    spec = spec_from_flags(name="demo", runtime="rt", workers=count)
    return Desired(spec=spec)


def test_apps_are_grouped_by_their_environment_not_their_name() -> None:
    apps = [
        app("demo", "head"),
        app("demo", "worker-1"),
        app("demo-worker-1", "head"),  # a cluster whose name looks like a node of another
        Application.model_validate({"id": "x", "name": "raycai-stray", "environment": "{}"}),
        Application.model_validate({"id": "y", "name": "other-app"}),
    ]
    grouped = group_by_cluster(apps)
    assert sorted(grouped) == ["demo", "demo-worker-1"]
    assert [m.node for m in grouped["demo"]] == ["head", "worker-1"]
    assert as_cluster_app(apps[3]) is None


def test_view_joins_each_app_to_its_live_ray_node_and_counts() -> None:
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1"),
            app("demo", "worker-2", "APPLICATION_STARTING"),
        ]
    )["demo"]
    nodes = [
        ray("demo", "head"),
        ray("demo", "worker-1", state="DEAD", start=1.0),  # before a rejoin
        ray("demo", "worker-1", used_cpu=1.0, start=2.0),
    ]
    view = merge_cluster(
        "demo",
        desired(2),
        members,
        {"worker-2": record("worker-2", "waiting-for-head")},
        None,
        nodes,
    )
    assert view.row("worker-1").ray.start_time == NOW.timestamp() + 2.0
    assert view.workers_joined == 1 and view.workers_running == 1
    assert view.nodes_alive == 2 and view.nodes_dead == 1
    assert not view.ready
    assert view.totals.cpu == (1.0, 4.0)
    assert "waiting for the head" in (view.row("worker-2").not_ready_reason or "")


def test_ready_only_when_every_desired_node_joined_ray() -> None:
    members = group_by_cluster([app("demo", "head"), app("demo", "worker-1")])["demo"]
    joined = merge_cluster(
        "demo", desired(1), members, {}, None, [ray("demo", "head"), ray("demo", "worker-1")]
    )
    assert joined.ready
    short = merge_cluster(
        "demo", desired(2), members, {}, None, [ray("demo", "head"), ray("demo", "worker-1")]
    )
    assert not short.ready  # the second desired worker does not exist yet
    running_not_joined = merge_cluster("demo", desired(1), members, {}, None, [ray("demo", "head")])
    assert not running_not_joined.ready


def test_not_ready_reasons_say_why() -> None:
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1", "APPLICATION_STARTING"),
            app("demo", "worker-2", "APPLICATION_FAILED"),
            app("demo", "worker-3"),
        ]
    )["demo"]
    records = {
        "worker-2": record("worker-2", "failed", "Ray 2.59.0 found, the cluster needs 2.60.0"),
        "worker-3": record("worker-3", "starting-ray"),
    }
    view = merge_cluster("demo", desired(3), members, records, None, [ray("demo", "head")])
    assert "quota or scheduling" in view.row("worker-1").not_ready_reason
    assert "needs 2.60.0" in view.row("worker-2").not_ready_reason
    assert "starting ray" in view.row("worker-3").not_ready_reason
    assert view.row("head").not_ready_reason is None


def test_removal_prefers_failed_then_unjoined_then_idle_then_highest_index() -> None:
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1"),
            app("demo", "worker-2"),
            app("demo", "worker-3"),
            app("demo", "worker-4", "APPLICATION_FAILED"),
            app("demo", "worker-5"),
        ]
    )["demo"]
    nodes = [
        ray("demo", "head"),
        ray("demo", "worker-1", used_cpu=2.0),  # busy
        ray("demo", "worker-2"),  # idle
        ray("demo", "worker-3"),  # idle
        # worker-5 runs but has not joined
    ]
    view = merge_cluster("demo", desired(5), members, {}, None, nodes)
    order = [row.node for row in removal_order(view.worker_rows)]
    assert order == ["worker-4", "worker-5", "worker-3", "worker-2", "worker-1"]


def test_missing_nodes_fill_the_lowest_free_indexes() -> None:
    assert _missing_nodes({}, 3) == ["worker-1", "worker-2", "worker-3"]
    assert _missing_nodes({"worker-2": 1, "worker-5": 1}, 4) == ["worker-1", "worker-3"]
    assert _missing_nodes({"worker-1": 1, "worker-2": 1}, 1) == []


def test_ready_needs_every_node_joined_and_ray_answering() -> None:
    """The one readiness rule: the launchers' word that every node joined is not enough."""
    from raycai_core.cluster.readiness import progress_line

    members = group_by_cluster([app("demo", "head"), app("demo", "worker-1")])["demo"]
    records = {"head": record("head", "running"), "worker-1": record("worker-1", "joined")}
    nodes = [ray("demo", "head"), ray("demo", "worker-1")]
    head = HeadAddress("127.0.0.1", 1, 2, 3, started_at=0.0, incarnation="a")

    not_asked = merge_cluster("demo", desired(1), members, records, head, None)
    assert not_asked.all_joined and not not_asked.ready
    assert "waiting for Ray's own node list" in (not_asked.not_ready_reason or "")

    silent = merge_cluster("demo", desired(1), members, records, head, [], "connection refused")
    assert silent.all_joined and not silent.ready and silent.ray_not_answering
    assert "Ray does not answer: connection refused" in (silent.not_ready_reason or "")
    assert silent.reason(silent.row("worker-1")) == (
        "launcher says joined; Ray is not answering, so unconfirmed"
    )
    assert progress_line(silent) == (
        "nodes joined Ray: 2/2 by the launchers' word; waiting for Ray's node list "
        "(Ray does not answer: connection refused)"
    )

    answered = merge_cluster("demo", desired(1), members, records, head, nodes)
    assert answered.ready and answered.not_ready_reason is None
    assert answered.reason(answered.row("worker-1")) is None
    assert progress_line(answered) == "nodes joined Ray: 2/2"

    # No head address yet: Ray was not asked, so that is not "Ray does not answer".
    unpublished = merge_cluster("demo", desired(1), members, records, None, [], "no head.json")
    assert not unpublished.ready and not unpublished.ray_not_answering


def test_not_ready_reason_names_the_nodes_and_the_missing_workers() -> None:
    from raycai_core.cluster.readiness import progress_line

    members = group_by_cluster([app("demo", "head"), app("demo", "worker-1")])["demo"]
    records = {"worker-1": record("worker-1", "failed", "Ray 2.59.0 found, needs 2.60.0")}
    view = merge_cluster("demo", desired(3), members, records, None, [ray("demo", "head")])
    reason = view.not_ready_reason or ""
    assert "worker-1: Ray 2.59.0 found" in reason
    assert "2 worker application(s) not created yet" in reason
    assert view.failed_row is view.row("worker-1")
    assert progress_line(view) == "nodes joined Ray: 1/4; worker-1: Ray 2.59.0 found, needs 2.60.0"


def test_uptime_is_measured_at_the_moment_of_the_view() -> None:
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1", "APPLICATION_STARTING")]
    )["demo"]
    at = NOW.timestamp() + 90
    view = merge_cluster("demo", desired(1), members, {}, None, [], now=at)
    assert view.uptime_s(view.row("head")) == 90
    assert view.uptime_s(view.row("worker-1")) is None  # not RUNNING


def test_each_group_has_its_counts_and_the_cluster_is_ready_when_every_group_is() -> None:
    groups = ["data:count=2,cpu=1,memory=2", "gpu:min=0,max=4,gpu=1"]
    stored = Desired(spec=spec_from_flags(name="demo", runtime="rt", groups=groups))
    nodes = ["head", "gpu-1", "data-1", "data-2"]
    members = group_by_cluster([app("demo", n) for n in nodes])["demo"]
    records = {n: record(n, "running" if n == "head" else "joined") for n in nodes}
    rays = [ray("demo", n) for n in nodes if n != "data-2"]
    view = merge_cluster("demo", stored, members, records, None, rays)
    # The head, then each group in the spec's order, by index.
    assert [r.node for r in view.rows] == ["head", "data-1", "data-2", "gpu-1"]
    assert [r.group for r in view.rows] == [None, "data", "data", "gpu"]
    data, gpu = view.groups
    assert (data.name, data.desired, data.existing, data.running, data.joined) == (
        "data",
        2,
        2,
        2,
        1,
    )
    assert not data.autoscale and not data.all_joined
    assert (gpu.min, gpu.max, gpu.autoscale, gpu.existing, gpu.joined) == (0, 4, True, 1, 1)
    assert gpu.all_joined  # at least its min joined: more come and go with demand
    assert view.desired_workers == 2 and view.autoscaled
    assert not view.ready and "data-2" in (view.not_ready_reason or "")
    everyone = merge_cluster(
        "demo", stored, members, records, None, [ray("demo", n) for n in nodes]
    )
    assert everyone.ready
    # A group's missing worker is named with its group.
    short = merge_cluster("demo", stored, members[:2], records, None, rays)
    assert "1 worker application(s) of group data not created yet" in (short.not_ready_reason or "")
