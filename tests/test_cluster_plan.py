"""The pure planner (raycai_core.cluster.plan): which nodes a scale, heal, down or up acts
on, decided from the stored desired state and one view. No API, no files, no Ray."""

from __future__ import annotations

import time

import pytest

from raycai_core.cluster import phases
from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.plan import (
    check_sizes_unchanged,
    heal_actions,
    plan_down,
    plan_scale,
    plan_token_restart,
    plan_up,
    removal_order,
)
from raycai_core.cluster.records import NodeRecord
from raycai_core.cluster.types import Action, ClusterError, ScaleTarget
from raycai_core.cluster.view import ClusterView, merge_cluster
from raycai_core.spec import spec_from_flags
from tests.test_cluster_view import app, desired, ray


def joined(node: str, can_drain: bool = True, ray_node_id: str | None = None) -> NodeRecord:
    return NodeRecord(
        node=node,
        role="worker",
        phase="joined",
        updated_at=time.time(),
        drain=phases.DRAIN_PROTOCOL if can_drain else 0,
        ray_node_id=ray_node_id,
    )


def mixed_cluster(stored: int = 5) -> ClusterView:
    """worker-1 busy, worker-2 and -3 idle, worker-4 FAILED, worker-5 running not joined,
    worker-6 joined but its launcher cannot drain (and Ray did not say it is idle: busy)."""
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1"),
            app("demo", "worker-2"),
            app("demo", "worker-3"),
            app("demo", "worker-4", "APPLICATION_FAILED"),
            app("demo", "worker-5"),
            app("demo", "worker-6"),
        ]
    )["demo"]
    nodes = [
        ray("demo", "head"),
        ray("demo", "worker-1", used_cpu=2.0),
        ray("demo", "worker-2"),
        ray("demo", "worker-3"),
        ray("demo", "worker-6", used_cpu=1.0),
    ]
    records = {node: joined(node) for node in ("worker-1", "worker-2", "worker-3")}
    records["worker-6"] = joined("worker-6", can_drain=False)
    return merge_cluster("demo", desired(stored), members, records, None, nodes)


REMOVAL_ORDER = ["worker-4", "worker-5", "worker-3", "worker-2", "worker-6", "worker-1"]


@pytest.mark.parametrize(
    ("target", "removed"),
    [
        (ScaleTarget(delta=-1), ["worker-4", "worker-5"]),  # 6 exist, 5 stored: 4 stay
        (ScaleTarget(count=3), REMOVAL_ORDER[:3]),
        (ScaleTarget(delta=-3), REMOVAL_ORDER[:4]),
        (ScaleTarget(count=0), REMOVAL_ORDER),
        (ScaleTarget(delta=-99), REMOVAL_ORDER),
    ],
)
def test_scale_down_removes_in_removal_order_from_the_stored_count(
    target: ScaleTarget, removed: list[str]
) -> None:
    view = mixed_cluster(stored=5)
    assert [r.node for r in removal_order(view.worker_rows)] == REMOVAL_ORDER
    plan = plan_scale(view.desired, target, view.worker_rows)
    assert plan.before == 5 and plan.after == target.apply(5)
    assert plan.spec.workers.count == plan.after
    assert [a.node for a in plan.remove] == removed
    assert all(a.kind == "remove" and a.app is not None for a in plan.remove)
    assert plan.create == []
    assert plan.busy == [n for n in removed if n in ("worker-1", "worker-6")]
    assert plan.keep == [r.node for r in view.worker_rows if r.node not in removed]


def test_only_joined_workers_whose_launcher_can_are_drained_first() -> None:
    view = mixed_cluster()
    plan = plan_scale(view.desired, ScaleTarget(count=0), view.worker_rows)
    by_node = {a.node: a for a in plan.remove}
    assert by_node["worker-1"].drain_id == view.row("worker-1").ray.node_id
    assert by_node["worker-2"].drain_id is not None
    assert by_node["worker-4"].drain_id is None and by_node["worker-4"].note == ""  # failed
    assert by_node["worker-5"].drain_id is None and by_node["worker-5"].note == ""  # not in Ray
    assert by_node["worker-6"].drain_id is None
    assert by_node["worker-6"].note == "not drained (its launcher cannot drain); removing it"
    assert [(a.node, a.reason) for a in plan.remove[:3]] == [
        ("worker-4", "application failed"),
        ("worker-5", "not joined"),
        ("worker-3", "idle"),
    ]


@pytest.mark.parametrize(
    ("target", "created"),
    [
        (ScaleTarget(delta=2), ["worker-7"]),  # 5 stored + 2 = 7; six exist
        (ScaleTarget(count=9), ["worker-7", "worker-8", "worker-9"]),
        (ScaleTarget(count=6), []),
    ],
)
def test_scale_up_creates_the_lowest_free_indexes(target: ScaleTarget, created: list[str]) -> None:
    view = mixed_cluster(stored=5)
    plan = plan_scale(view.desired, target, view.worker_rows)
    assert [a.node for a in plan.create] == created
    assert all(a.kind == "create" for a in plan.create)
    assert plan.remove == [] and plan.busy == []
    assert plan.keep == [r.node for r in view.worker_rows]


def test_scale_up_fills_holes_left_by_deleted_workers() -> None:
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-2"), app("demo", "worker-5")]
    )["demo"]
    view = merge_cluster("demo", desired(2), members, {}, None, None)
    plan = plan_scale(view.desired, ScaleTarget(delta=2), view.worker_rows)
    assert [a.node for a in plan.create] == ["worker-1", "worker-3"]


def test_heal_actions_follow_the_healing_policy_in_order() -> None:
    now = time.time()
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1", "APPLICATION_FAILED"),
            app("demo", "worker-2"),
            app("demo", "worker-3"),
        ]
    )["demo"]
    records = {
        "head": NodeRecord(node="head", role="head", phase="running", updated_at=now),
        "worker-2": NodeRecord(node="worker-2", role="worker", phase="drained", updated_at=now),
        "worker-3": NodeRecord(node="worker-3", role="worker", phase="joined", updated_at=now),
    }
    view = merge_cluster("demo", desired(4), members, records, None, None, now=now)
    actions = heal_actions(view, view.desired, now)
    assert [(a.kind, a.node) for a in actions] == [
        ("restart", "worker-1"),
        ("resume", "worker-2"),
        ("create", "worker-4"),
    ]
    assert actions[0].app is not None and actions[0].app.app.id == "id-demo-worker-1"
    assert actions[2].reason == "application missing"
    deleting = Desired(spec=view.desired.spec, state="deleting")
    assert heal_actions(view, deleting, now) == []


def test_down_deletes_every_application_and_nothing_else() -> None:
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1"), app("demo", "worker-3")]
    )["demo"]
    actions = plan_down(members)
    assert [(a.kind, a.node, a.app) for a in actions] == [("delete", m.node, m) for m in members]
    assert all(a.drain_id is None for a in actions)
    assert plan_down([]) == []


def spec(workers: int, **more: object):
    return spec_from_flags(name="demo", runtime="rt", workers=workers, **more)


def test_up_creates_what_is_missing_restarts_what_stopped_and_deletes_extras() -> None:
    members = group_by_cluster(
        [
            app("demo", "head", "APPLICATION_FAILED"),
            app("demo", "worker-1", "APPLICATION_STOPPED"),
            app("demo", "worker-3"),
            app("demo", "worker-4", "APPLICATION_STOPPED"),  # one too many: deleted, not restarted
        ]
    )["demo"]
    plan = plan_up(spec(2), members)
    assert plan.head == Action("restart", "head", "was failed", members[0])
    assert [(a.kind, a.node) for a in plan.workers] == [
        ("restart", "worker-1"),
        ("delete", "worker-4"),
    ]
    grown = plan_up(spec(5), members)
    assert [(a.kind, a.node) for a in grown.workers] == [
        ("create", "worker-2"),
        ("create", "worker-5"),
        ("restart", "worker-1"),
        ("restart", "worker-4"),
    ]
    fresh = plan_up(spec(2), [])
    assert fresh.head == Action("create", "head", "missing")
    assert [(a.kind, a.node) for a in fresh.workers] == [
        ("create", "worker-1"),
        ("create", "worker-2"),
    ]
    assert plan_up(spec(0), group_by_cluster([app("demo", "head")])["demo"]).head is None


def test_up_leaves_the_autoscalers_workers_up_to_its_max() -> None:
    members = group_by_cluster(
        [app("demo", "head"), *(app("demo", f"worker-{k}") for k in range(1, 5))]
    )["demo"]
    autoscaled = spec_from_flags(name="demo", runtime="rt", min_workers=1, max_workers=3)
    plan = plan_up(autoscaled, members)
    assert [(a.kind, a.node) for a in plan.workers] == [("delete", "worker-4")]


def test_a_lost_token_restarts_the_head_then_the_workers() -> None:
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1"), app("demo", "worker-2")]
    )["demo"]
    head, workers = plan_token_restart(members)
    assert [a.node for a in head] == ["head"]
    assert [a.node for a in workers] == ["worker-1", "worker-2"]
    assert {a.kind for a in head + workers} == {"restart"}


def test_up_refuses_to_resize_nodes_in_place() -> None:
    members = group_by_cluster([app("demo", "head")])["demo"]
    before = Desired(spec=spec(1, cpu=1))
    check_sizes_unchanged(before, spec(3, cpu=1), members)  # the count may change
    with pytest.raises(ClusterError, match="already runs with other workers settings"):
        check_sizes_unchanged(before, spec(1, cpu=2), members)
    check_sizes_unchanged(before, spec(1, cpu=2), [])  # nothing runs yet: anything goes


# -- worker groups -------------------------------------------------------------------------


def grouped(data: int = 2, gpu: int = 1) -> Desired:
    """Two groups: `data` (CPU workers) and `gpu`."""
    groups = [f"data:count={data},cpu=1,memory=2", f"gpu:count={gpu},gpu=1"]
    return Desired(spec=spec_from_flags(name="demo", runtime="rt", groups=groups))


def grouped_view(stored: Desired, nodes: list[str], idle: tuple[str, ...] = ()) -> ClusterView:
    members = group_by_cluster([app("demo", "head"), *(app("demo", n) for n in nodes)])["demo"]
    records = {node: joined(node) for node in nodes}
    rays = [
        ray("demo", "head"),
        *(ray("demo", n, used_cpu=0.0 if n in idle else 1.0) for n in nodes),
    ]
    return merge_cluster("demo", stored, members, records, None, rays)


def test_scale_plans_every_named_group_from_one_state() -> None:
    stored = grouped(data=2, gpu=2)
    view = grouped_view(stored, ["data-1", "data-2", "gpu-1", "gpu-2"], idle=("gpu-1",))
    plan = plan_scale(
        stored, {"data": ScaleTarget(delta=1), "gpu": ScaleTarget(delta=-1)}, view.worker_rows
    )
    assert [a.node for a in plan.create] == ["data-3"]
    # Within the gpu group, the idle worker goes before the busy one of higher index.
    assert [(a.node, a.reason) for a in plan.remove] == [("gpu-1", "idle")]
    assert plan.groups == {"data": (2, 3), "gpu": (2, 1)}
    assert (plan.before, plan.after) == (4, 4)
    assert (plan.spec.group("data").count, plan.spec.group("gpu").count) == (3, 1)
    assert plan.busy == [] and "gpu-1" not in plan.keep and "gpu-2" in plan.keep
    # One group named: the other keeps its count and its workers.
    only = plan_scale(stored, {"gpu": ScaleTarget(count=0)}, view.worker_rows)
    assert [a.node for a in only.remove] == ["gpu-1", "gpu-2"] and only.create == []
    assert only.busy == ["gpu-2"]
    assert only.spec.group("data").count == 2 and only.groups == {"gpu": (2, 0)}


def test_scale_without_a_group_is_refused_on_a_cluster_with_several() -> None:
    stored = grouped()
    view = grouped_view(stored, ["data-1", "data-2", "gpu-1"])
    with pytest.raises(ClusterError, match=r"several worker groups \(data, gpu\)"):
        plan_scale(stored, ScaleTarget(count=3), view.worker_rows)
    with pytest.raises(ClusterError, match=r"no worker group 'tpu' \(its groups: data, gpu\)"):
        plan_scale(stored, {"tpu": ScaleTarget(count=1)}, view.worker_rows)
    # The one-group form names no group.
    one = plan_scale(desired(1), ScaleTarget(delta=1), [])
    assert [a.node for a in one.create] == ["worker-1", "worker-2"]
    assert one.groups == {"worker": (1, 2)}


def test_up_converges_each_group_to_its_own_count() -> None:
    two = grouped(data=2, gpu=1).spec
    fresh = plan_up(two, [])
    assert [(a.kind, a.node) for a in fresh.workers] == [
        ("create", "data-1"),
        ("create", "data-2"),
        ("create", "gpu-1"),
    ]
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "data-2", "APPLICATION_STOPPED"),
            app("demo", "gpu-1"),
            app("demo", "gpu-2"),  # beyond the gpu group's count
            app("demo", "worker-1"),  # a group the spec no longer names
        ]
    )["demo"]
    plan = plan_up(two, members)
    assert plan.head is None
    assert [(a.kind, a.node) for a in plan.workers] == [
        ("create", "data-1"),
        ("restart", "data-2"),
        ("delete", "gpu-2"),
        ("delete", "worker-1"),
    ]
    assert plan.workers[-1].reason == "group worker is no longer in the spec"


def test_heal_keeps_each_group_at_its_count() -> None:
    now = time.time()
    stored = grouped(data=2, gpu=1)
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "data-1"), app("demo", "gpu-1", "APPLICATION_FAILED")]
    )["demo"]
    records = {"head": NodeRecord(node="head", role="head", phase="running", updated_at=now)}
    view = merge_cluster("demo", stored, members, records, None, None, now=now)
    actions = heal_actions(view, stored, now)
    assert [(a.kind, a.node) for a in actions] == [("restart", "gpu-1"), ("create", "data-2")]


def test_up_refuses_to_resize_a_group_in_place_but_may_add_or_remove_one() -> None:
    members = group_by_cluster([app("demo", "head")])["demo"]
    before = grouped()
    check_sizes_unchanged(before, grouped(data=5, gpu=0).spec, members)  # counts may change
    bigger = spec_from_flags(
        name="demo", runtime="rt", groups=["data:count=2,cpu=4,memory=2", "gpu:count=1,gpu=1"]
    )
    with pytest.raises(ClusterError, match="other worker group data settings"):
        check_sizes_unchanged(before, bigger, members)
    fewer = spec_from_flags(name="demo", runtime="rt", groups=["data:count=2,cpu=1,memory=2"])
    check_sizes_unchanged(before, fewer, members)  # the gpu group's workers go
    more = spec_from_flags(
        name="demo",
        runtime="rt",
        groups=["data:count=2,cpu=1,memory=2", "gpu:count=1,gpu=1", "big:count=1,cpu=8"],
    )
    check_sizes_unchanged(before, more, members)  # the big group's workers come
