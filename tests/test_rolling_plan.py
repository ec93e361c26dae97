"""The rolling update's plan (raycai_core.cluster.rolling_plan) and its record: which workers
are replaced and in which order, what stays, the peak, what is refused and why. Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.rolling import _stop_reason
from raycai_core.cluster.rolling_plan import (
    UpdateRefused,
    plan_update,
    runtime_python,
    settings_changed,
    with_group_settings,
)
from raycai_core.cluster.rolling_state import (
    Replaced,
    RollingRecord,
    Step,
    read_rolling,
    status_line,
    write_rolling,
)
from raycai_core.cluster.view import ClusterView, merge_cluster
from raycai_core.spec import ClusterSpec, spec_from_flags
from tests.test_cluster_plan import joined
from tests.test_cluster_view import NOW, app, desired, ray

PY311 = "img/ml-runtime-pbj-workbench-python3.11-standard:1"
PY310 = "img/ml-runtime-pbj-workbench-python3.10-standard:1"


def spec(**flags: object) -> ClusterSpec:
    values: dict[str, object] = {"name": "demo", "runtime": PY311, "workers": 2, "cpu": 2}
    values.update(flags)
    return spec_from_flags(**values)  # type: ignore[arg-type]


def two_workers() -> ClusterView:
    """worker-1 busy, worker-2 idle, both joined."""
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1"), app("demo", "worker-2")]
    )["demo"]
    nodes = [
        ray("demo", "head"),
        ray("demo", "worker-1", used_cpu=1.0),
        ray("demo", "worker-2"),
    ]
    records = {node: joined(node) for node in ("worker-1", "worker-2")}
    return merge_cluster("demo", desired(2), members, records, None, nodes)


def test_a_worker_size_change_replaces_every_worker_idle_first_and_keeps_the_head() -> None:
    plan = plan_update(spec(), spec(cpu=4, memory=16), two_workers().worker_rows)
    assert [(r.node, r.reason) for r in plan.replace] == [
        ("worker-2", "idle"),
        ("worker-1", "busy"),
    ]
    assert [r.app_id for r in plan.replace] == ["id-demo-worker-2", "id-demo-worker-1"]
    assert plan.keep == ["head"] and not plan.restart_head
    assert "group worker cpu: 2.0 -> 4.0" in plan.changes
    assert plan.peak is not None and (plan.peak.cpu, plan.peak.memory) == (4.0, 16.0)
    text = "\n".join(plan.lines())
    assert (
        "replace 2 worker(s) one at a time, in this order: worker-2 (idle), worker-1 (busy)" in text
    )
    assert "peak quota: one extra worker at a time (4 vCPU, 16 GB)" in text


def test_env_change_replaces_the_workers_and_says_the_head_keeps_its_own() -> None:
    plan = plan_update(spec(), spec(env={"A": "1"}), two_workers().worker_rows)
    assert len(plan.replace) == 2
    assert any("head keeps its environment" in note for note in plan.notes)


def test_a_count_change_alone_is_no_rolling_update() -> None:
    assert not settings_changed(spec(), spec(workers=5))
    assert settings_changed(spec(), spec(cpu=3))
    assert settings_changed(spec(), spec(ray_version="2.61.0"))


def test_a_ray_version_change_needs_restart_head_and_says_why() -> None:
    with pytest.raises(UpdateRefused) as refused:
        plan_update(spec(), spec(ray_version="2.61.0"), two_workers().worker_rows)
    message = str(refused.value)
    assert "workers of another Ray version cannot join the running head" in message
    assert "--restart-head" in message and "LOST" in message
    plan = plan_update(
        spec(), spec(ray_version="2.61.0"), two_workers().worker_rows, restart_head=True
    )
    assert plan.restart_head == ["Ray 2.61.0"]
    assert len(plan.replace) == 2 and "head" not in plan.keep


def test_a_head_only_change_is_the_same_explicit_step_and_replaces_no_worker() -> None:
    with pytest.raises(UpdateRefused, match="needs a new head"):
        plan_update(spec(), spec(head_cpu=4), two_workers().worker_rows)
    plan = plan_update(spec(), spec(head_cpu=4), two_workers().worker_rows, restart_head=True)
    assert plan.restart_head == ["its settings change"] and plan.replace == []
    assert plan.keep == ["worker-1", "worker-2"]


def test_changes_that_cannot_apply_in_place_say_what_to_do() -> None:
    rows = two_workers().worker_rows
    with pytest.raises(UpdateRefused, match="autoscaler on cannot be done in place"):
        plan_update(spec(), spec(workers=None, min_workers=1, max_workers=4), rows)
    with pytest.raises(UpdateRefused, match="name cannot change in place"):
        plan_update(spec(), spec(name="other"), rows)
    with pytest.raises(UpdateRefused, match="same Python"):
        plan_update(spec(), spec(worker_runtime=PY310, cpu=3), rows)
    renamed = spec_from_flags(name="demo", runtime=PY311, groups=["pool:cpu=2,memory=8,count=2"])
    plan = plan_update(spec(memory=8), renamed, rows)
    assert any("a group's name cannot change in place" in note for note in plan.notes)


def test_runtime_python_reads_the_image_name() -> None:
    assert runtime_python(PY311) == "3.11" and runtime_python("custom:1") is None


def test_a_group_whose_replacement_began_stores_its_new_settings_with_its_own_count() -> None:
    stored = spec(workers=3)
    merged = with_group_settings(stored, "worker", spec(cpu=4, workers=7, env={"A": "1"}))
    assert merged.workers.cpu == 4 and merged.workers.count == 3 and merged.env == {"A": "1"}


def test_the_record_survives_a_round_trip_and_says_how_far_it_got(tmp_path) -> None:
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    plan = plan_update(spec(), spec(cpu=4), two_workers().worker_rows)
    record = RollingRecord.begin(plan)
    record.replaced.append(Replaced("worker", "worker-2", "worker-3"))
    record.current = Step("worker", "worker-1", "worker-2", "joining", "id-new")
    write_rolling(paths, record)
    again = read_rolling(paths)
    assert again is not None and again.same_target(spec(cpu=4))
    assert not again.same_target(spec(cpu=8))
    assert [r.node for r in again.pending()] == ["worker-1"]
    assert again.current == record.current
    assert status_line(again, interrupted=True).startswith(
        "update: interrupted (1 of 2 worker(s) replaced; worker: worker-2 replacing worker-1"
    )


def test_an_unfinished_update_binds_another_spec_once_a_node_runs_its_settings() -> None:
    plan = plan_update(spec(), spec(cpu=4), two_workers().worker_rows)
    record = RollingRecord.begin(plan)
    assert record.binds(spec(cpu=8))  # running (or interrupted): finish it first
    assert not record.binds(spec(cpu=4))  # the same target goes on
    record.state = "stopped"  # stopped before any replacement: a new plan may start
    assert not record.binds(spec(cpu=8))
    record.replaced.append(Replaced("worker", "worker-2", "worker-3"))
    assert record.binds(spec(cpu=8))
    record.state = "done"
    assert not record.binds(spec(cpu=8))


def test_a_new_worker_waiting_for_quota_stops_the_update_even_under_a_reused_name() -> None:
    """A replacement takes the name of a worker replaced earlier, whose launcher record is
    still on disk: that record is not the new application's, so the wait for quota counts."""
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-2"),
            app("demo", "worker-1", status="APPLICATION_STARTING"),
        ]
    )["demo"]
    nodes = [ray("demo", "head"), ray("demo", "worker-2")]
    # The earlier worker's launcher started long ago and wrote "stopped" as it went, just
    # before the new application was created.
    earlier = replace(
        joined("worker-1"),
        phase="stopped",
        started_at=NOW.timestamp() - 600,
        updated_at=NOW.timestamp() - 2,
    )
    own = replace(joined("worker-1"), started_at=NOW.timestamp() + 1)
    for record, stops in ((earlier, True), (None, True), (own, False)):
        records = {"worker-2": joined("worker-2")}
        if record is not None:
            records["worker-1"] = record
        view = merge_cluster("demo", desired(2), members, records, None, nodes)
        why = _stop_reason(view, view.row("worker-1"), 10.0, 3.0, 600.0)
        if stops:
            assert why is not None and "the project's quota has no room" in why, record
        else:  # its own launcher runs: waiting to join, within the join timeout
            assert why is None
