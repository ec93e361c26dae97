"""Scaling by count or delta, the per-cluster lock, the drain protocol's decisions, the one
rule for "joined", and the healing policy: pure parts first, then the CLI against the local
workspace (no Ray: the workspace's quota keeps every application STARTING)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from raycai_core.cluster import phases
from raycai_core.cluster.apps import group_by_cluster
from raycai_core.cluster.desired import Desired, read_desired, write_desired
from raycai_core.cluster.drain import drain_end, drain_node_id
from raycai_core.cluster.healing import HealPlanner, heal_reason, plan_heal
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import summarise
from raycai_core.cluster.lock import ClusterLocked, cluster_lock
from raycai_core.cluster.records import NodeRecord
from raycai_core.cluster.types import ClusterSummary, ScaleTarget
from raycai_core.cluster.view import merge_cluster
from raycai_core.launcher.render import render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cli_env, cluster_apps, nodes_of, raycai, raycai_argv
from tests.test_cluster_view import app, desired, ray

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0


# --- ScaleTarget -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "from_two", "shown"),
    [
        ("3", ScaleTarget(count=3), 3, "3"),
        ("0", ScaleTarget(count=0), 0, "0"),
        ("+2", ScaleTarget(delta=2), 4, "+2"),
        ("-1", ScaleTarget(delta=-1), 1, "-1"),
        ("-5", ScaleTarget(delta=-5), 0, "-5"),  # never below 0
        (" +0 ", ScaleTarget(delta=0), 2, "+0"),
    ],
)
def test_scale_targets_are_counts_or_deltas(
    text: str, target: ScaleTarget, from_two: int, shown: str
) -> None:
    parsed = ScaleTarget.parse(text)
    assert parsed == target and parsed.apply(2) == from_two and str(parsed) == shown


@pytest.mark.parametrize("text", ["x", "+", "-", "--3", "+-1", "1.5", "", "٣", "9999999", "3x"])
def test_bad_scale_targets_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="is not a worker count: use N"):
        ScaleTarget.parse(text)


def test_a_scale_target_is_a_count_or_a_delta_not_both() -> None:
    with pytest.raises(ValueError):
        ScaleTarget(count=1, delta=1)
    with pytest.raises(ValueError):
        ScaleTarget()
    with pytest.raises(ValueError):
        ScaleTarget(count=-1)


# --- the lock ----------------------------------------------------------------------------


def _cluster_dir(tmp_path: Path) -> ClusterPaths:
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    return paths


async def test_the_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    paths = _cluster_dir(tmp_path)
    order: list[str] = []
    waited: list[bool] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with cluster_lock(paths):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with cluster_lock(paths, on_wait=lambda: waited.append(True)):
            order.append("second in")

    holder = asyncio.create_task(first())
    waiter = asyncio.create_task(second())
    await first_in.wait()
    with pytest.raises(ClusterLocked, match="another operation on cluster 'demo'"):
        async with cluster_lock(paths, wait=False):
            pass
    await asyncio.sleep(0.3)
    assert order == ["first in"] and waited == [True]
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first in", "first out", "second in"]


async def test_a_cancelled_waiter_leaves_the_lock_free(tmp_path: Path) -> None:
    paths = _cluster_dir(tmp_path)
    async with cluster_lock(paths):
        waiter = asyncio.create_task(cluster_lock(paths).__aenter__())
        await asyncio.sleep(0.25)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with cluster_lock(paths, wait=False):  # nobody holds it now
        pass


async def test_locking_never_creates_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        async with cluster_lock(ClusterPaths(tmp_path, "nothere")):
            pass
    assert not (tmp_path / ".raycai").exists()


# --- one rule for "joined", and the stale-record rule ------------------------------------


def record(node: str, phase: str, age: float = 1.0, **more: object) -> NodeRecord:
    role = "head" if node == "head" else "worker"
    return NodeRecord(node=node, role=role, phase=phase, updated_at=NOW - age, **more)


def test_joined_is_rays_word_when_ray_answered_else_a_live_launchers() -> None:
    fresh = record("worker-1", "joined")
    stale = record("worker-1", "joined", age=2 * phases.HEARTBEAT_S + 1)
    assert phases.node_joined(True, fresh, None, NOW)
    assert not phases.node_joined(True, stale, None, NOW)
    assert not phases.node_joined(False, fresh, None, NOW)  # the application is not running
    assert not phases.node_joined(True, record("worker-1", "starting-ray"), None, NOW)
    assert phases.node_joined(True, None, True, NOW)  # Ray lists it ALIVE
    assert not phases.node_joined(True, fresh, False, NOW)  # Ray answered without it
    quick = record("worker-1", "joined", age=25, heartbeat_s=10.0)
    assert phases.is_stale(quick, NOW)  # two of its own (shorter) heartbeats


def test_the_list_and_the_cluster_screen_count_joined_alike(tmp_path: Path) -> None:
    """summarise (the list, `raycai list`) and merge_cluster (the cluster screen without a
    Ray answer) decide "joined" by the same rule, stale records included."""
    members = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1"), app("demo", "worker-2")]
    )["demo"]
    records = {
        "head": record("head", "running"),
        "worker-1": record("worker-1", "joined"),
        "worker-2": record("worker-2", "joined", age=3 * phases.HEARTBEAT_S),
    }
    paths = ClusterPaths(tmp_path, "demo")
    paths.nodes_dir.mkdir(parents=True)
    for node, rec in records.items():
        data = {"node": node, "role": rec.role, "phase": rec.phase, "updated_at": rec.updated_at}
        paths.node_record(node).write_text(json.dumps(data))
    (summary,) = summarise(tmp_path, {"demo": members}, now=NOW)
    view = merge_cluster("demo", desired(2), members, records, None, None, now=NOW)
    assert not view.ray_known
    assert summary.joined_workers == view.workers_joined == 1
    assert view.row("head").joined
    reason = view.row("worker-2").not_ready_reason
    assert reason == f"launcher gone: no heartbeat for {int(3 * phases.HEARTBEAT_S)} s"
    # With Ray's answer, Ray decides (worker-1 is not in it).
    with_ray = merge_cluster(
        "demo", desired(2), members, records, None, [ray("demo", "head")], now=NOW
    )
    assert with_ray.workers_joined == 0
    assert with_ray.row("worker-1").not_ready_reason == (
        "launcher says joined; Ray does not list the node yet"
    )


# --- drain decisions ---------------------------------------------------------------------


def test_drain_ends_when_the_launcher_drained_or_left_ray() -> None:
    assert drain_end(record("worker-1", "draining", drain=1), NOW) is None
    assert drain_end(record("worker-1", "joined", drain=1), NOW) is None  # not seen yet
    assert drain_end(record("worker-1", "drained"), NOW) == "drained"
    for phase in ("stopped", "failed", "ray-exited", "waiting-for-head"):
        assert drain_end(record("worker-1", phase), NOW) == "gone"
    assert drain_end(record("worker-1", "draining", age=100), NOW) == "gone"
    assert drain_end(None, NOW) == "gone"


def test_only_launchers_that_can_drain_are_asked_to() -> None:
    assert drain_node_id(record("worker-1", "joined", drain=1), "ab") == "ab"
    assert drain_node_id(record("worker-1", "joined", drain=1, ray_node_id="cd"), None) == "cd"
    assert drain_node_id(record("worker-1", "joined"), "ab") is None  # an older launcher
    assert drain_node_id(None, "ab") is None


# --- the healing policy ------------------------------------------------------------------


def summary_of(
    count: int, members: list, records: dict, updated_ago: float = 600
) -> ClusterSummary:
    spec = spec_from_flags(name="demo", runtime="rt", workers=count)
    wanted = Desired(spec=spec, created_at=NOW - 9000, updated_at=NOW - updated_ago)
    return ClusterSummary("demo", wanted, members, 0, records)


def test_plan_heal_restarts_recreates_resumes_and_leaves_alone() -> None:
    members = group_by_cluster(
        [
            app("demo", "head"),
            app("demo", "worker-1", "APPLICATION_FAILED"),
            app("demo", "worker-2"),  # its launcher went silent
            app("demo", "worker-3"),  # drained by a scale-down that never deleted it
            app("demo", "worker-5"),
        ]
    )["demo"]
    records = {
        "head": record("head", "running"),
        "worker-1": record("worker-1", "failed", error="Ray 2.59.0 found"),
        "worker-2": record("worker-2", "joined", age=300),
        "worker-3": record("worker-3", "drained"),
        "worker-5": record("worker-5", "joined"),
    }
    view = merge_cluster("demo", desired(5), members, records, None, None, now=NOW)
    plan = plan_heal(view, view.desired, NOW)
    steps = {(s.node, s.kind) for s in plan.steps}
    assert steps == {
        ("worker-1", "restart"),
        ("worker-2", "restart"),
        ("worker-3", "resume"),
        ("worker-4", "recreate"),
    }
    reasons = {s.node: s.reason for s in plan.steps}
    assert "Ray 2.59.0 found" in reasons["worker-1"]
    assert reasons["worker-2"].startswith("launcher gone: no heartbeat for 300 s")

    # Scaling down to 3 while worker-3 drains: it is on its way out, not to be resumed.
    shrinking = merge_cluster("demo", desired(3), members, records, None, None, now=NOW)
    plan = plan_heal(shrinking, shrinking.desired, NOW)
    assert ("worker-3", "drained: a scale-down removes it") in plan.left_alone
    assert all(s.node != "worker-3" for s in plan.steps)
    # A record left by a launcher killed while it drained (its app deleted and recreated,
    # not started yet) is no drained worker to resume.
    recreated = group_by_cluster(
        [app("demo", "head"), app("demo", "worker-1", "APPLICATION_STARTING")]
    )
    left = {"head": record("head", "running"), "worker-1": record("worker-1", "draining")}
    starting = merge_cluster("demo", desired(1), recreated["demo"], left, None, None, now=NOW)
    assert plan_heal(starting, starting.desired, NOW).steps == []
    deleting = Desired(spec=view.desired.spec, state="deleting")
    assert plan_heal(view, deleting, NOW).steps == []


def test_heal_reason_sees_silent_launchers_and_unfinished_drains() -> None:
    members = group_by_cluster([app("demo", "head"), app("demo", "worker-1")])["demo"]
    healthy = {"head": record("head", "running"), "worker-1": record("worker-1", "joined")}
    assert heal_reason(summary_of(1, members, healthy), NOW) is None
    silent = dict(healthy, head=record("head", "running", age=61))
    assert heal_reason(summary_of(1, members, silent), NOW) == (
        "launcher gone (no heartbeat): head"
    )
    drained = dict(healthy, **{"worker-1": record("worker-1", "drained")})
    assert "unfinished scale-down: worker-1" in (
        heal_reason(summary_of(1, members, drained), NOW) or ""
    )
    assert heal_reason(summary_of(0, members, drained), NOW) is None  # being scaled down
    # A missing worker waits for the grace (an `up` may be creating it), unless told not to.
    short = summary_of(2, members, healthy, updated_ago=5)
    assert heal_reason(short, NOW) is None
    assert heal_reason(short, NOW, missing_grace_s=0) == "1 worker application(s) missing"
    assert HealPlanner(missing_grace_s=0).due([short], busy=(), now=NOW) == ["demo"]


# --- the CLI on the local workspace (applications never start: no Ray needed) ------------


def make_cluster(handle: WorkspaceHandle, workers: int) -> ClusterPaths:
    """A cluster's files, as `up` writes them, without starting anything."""
    spec = spec_from_flags(
        name="demo", runtime=RUNTIME, workers=workers, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    return paths


def stored_count(paths: ClusterPaths) -> int:
    desired_now = read_desired(paths)
    assert desired_now is not None
    return desired_now.spec.workers.count


async def test_scale_takes_counts_and_deltas_and_refuses_bad_ones(
    idle_workspace: WorkspaceHandle,
) -> None:
    handle = idle_workspace
    paths = make_cluster(handle, workers=1)
    added = raycai(handle, "scale", "demo", "+2")
    assert "demo: 1 -> 3 worker(s)" in added.stdout
    assert stored_count(paths) == 3
    assert nodes_of(await cluster_apps(handle), "demo") == ["worker-1", "worker-2", "worker-3"]

    removed = raycai(handle, "scale", "demo", "-1")  # a count, not an option
    assert "removed: worker-3" in removed.stdout and "demo: 3 -> 2 worker(s)" in removed.stdout
    assert stored_count(paths) == 2
    assert nodes_of(await cluster_apps(handle), "demo") == ["worker-1", "worker-2"]

    raycai(handle, "scale", "demo", "3", "--drain-timeout", "5")
    assert stored_count(paths) == 3
    for bad in ("x", "+", "--3"):
        result = raycai(handle, "scale", "demo", bad, check=False)
        assert result.returncode == 2, result.stderr
        assert f"{bad!r} is not a worker count" in result.stderr
    assert stored_count(paths) == 3
    assert nodes_of(await cluster_apps(handle), "demo") == ["worker-1", "worker-2", "worker-3"]


def test_two_concurrent_scales_by_plus_one_add_exactly_two(
    idle_workspace: WorkspaceHandle,
) -> None:
    """Regression: each `raycai scale NAME +1` reads cluster.json under the cluster's lock, so
    neither update is lost. The API is slowed down so that, without the lock, both would read
    the same count before either wrote (each holds it for two slowed calls)."""
    handle = idle_workspace
    paths = make_cluster(handle, workers=1)
    handle.set_faults(latency_s=1.0)
    argv = raycai_argv("scale", "demo", "+1")
    first, second = (
        subprocess.Popen(argv, env=cli_env(handle), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    )
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    handle.set_faults()
    assert stored_count(paths) == 3
    assert nodes_of(asyncio.run(cluster_apps(handle)), "demo") == [
        "worker-1",
        "worker-2",
        "worker-3",
    ]
    said = sorted(out.decode().strip().splitlines()[-1] for out, _ in outputs)
    assert said == ["demo: 1 -> 2 worker(s)", "demo: 2 -> 3 worker(s)"]


def test_scale_and_heal_refuse_an_unknown_cluster(idle_workspace: WorkspaceHandle) -> None:
    for args in (("scale", "nothere", "+1"), ("heal", "nothere", "--watch")):
        result = raycai(idle_workspace, *args, check=False)
        assert result.returncode == 2 and "no cluster named 'nothere'" in result.stderr
    assert not (idle_workspace.project_dir / ".raycai").exists()
