"""One error policy for heal, scale and down: when an action fails, every action already
taken is reported (as progress and in ActionsFailed), with the failure and its cause.

The real ClusterManager and CLI on the local workspace, whose zero quota keeps every
application STARTING (no process, no Ray). Failures are real API refusals: an application
deleted under a heal, a subdomain taken by someone else's application, injected 403s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import ActionsFailed, ClusterTimeout, Progress
from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.errors import CMLConflict, CMLNotFound, CMLPermissionDenied
from raycai_core.cml.models import AppStatus
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import subdomain
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME, new_app
from tests.helpers import cluster_apps, nodes_of, raycai
from tests.test_cluster_ops import make_cluster, stored_count

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def ops(
    idle_workspace: WorkspaceHandle,
) -> AsyncIterator[tuple[ClusterManager, list[Progress]]]:
    events: list[Progress] = []
    retry = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, deadline=10.0)
    async with CMLClient(idle_workspace.credentials(), retry=retry) as cml:
        manager = ClusterManager(cml, idle_workspace.project_dir, progress=events.append)
        try:
            yield manager, events
        finally:
            await manager.observer.aclose()


async def test_a_heal_that_fails_at_its_second_step_reports_the_first(
    idle_workspace: WorkspaceHandle, ops: tuple[ClusterManager, list[Progress]]
) -> None:
    manager, events = ops
    make_cluster(idle_workspace, workers=0)
    await manager.scale("demo", 2)
    members = {m.node: m.app.id for m in await manager.members("demo")}
    for node in ("worker-1", "worker-2"):
        await manager.cml.stop_application(members[node])
    view = await manager.observer.observe("demo", with_ray=False)
    assert [r.app_status for r in view.worker_rows] == [AppStatus.STOPPED] * 2
    # Someone deletes worker-2 between the observation and the heal's second step.
    await manager.cml.delete_application(members["worker-2"])

    with pytest.raises(ActionsFailed) as failed:
        await manager.heal("demo", view)
    error = failed.value
    assert [(d.node, d.result) for d in error.done] == [("worker-1", "restarted")]
    assert [f.action.node for f in error.failed] == ["worker-2"]
    assert isinstance(error.cause, CMLNotFound)
    assert "done: worker-1: restarted" in str(error)
    assert "failed: restart worker-2: " in str(error)
    heal_lines = [(e.level, e.message) for e in events if e.step == "heal"]
    assert heal_lines[0] == ("warning", "worker-1: restarted (application stopped)")
    assert heal_lines[1][0] == "error" and heal_lines[1][1].startswith("worker-2: restart failed")
    restarted = await manager.cml.get_application(members["worker-1"])
    assert restarted.status is AppStatus.STARTING  # the step taken stays taken


async def test_a_heal_stops_at_its_failing_step_and_names_those_it_left(
    idle_workspace: WorkspaceHandle, ops: tuple[ClusterManager, list[Progress]]
) -> None:
    manager, _ = ops
    make_cluster(idle_workspace, workers=0)
    await manager.scale("demo", 3)
    members = {m.node: m.app.id for m in await manager.members("demo")}
    for node in ("worker-1", "worker-2", "worker-3"):
        await manager.cml.stop_application(members[node])
    view = await manager.observer.observe("demo", with_ray=False)
    await manager.cml.delete_application(members["worker-1"])

    with pytest.raises(ActionsFailed) as failed:
        await manager.heal("demo", view)
    assert failed.value.done == []
    assert [f.action.node for f in failed.value.failed] == ["worker-1"]
    assert [str(a) for a in failed.value.skipped] == ["restart worker-2", "restart worker-3"]
    assert "not attempted: restart worker-3" in str(failed.value)


async def test_a_down_refused_for_some_applications_reports_those_it_deleted(
    idle_workspace: WorkspaceHandle, ops: tuple[ClusterManager, list[Progress]]
) -> None:
    manager, _ = ops
    spec = small_spec(workers=2)
    with pytest.raises(ClusterTimeout):  # the head never starts here; its apps exist
        await manager.up(spec, wait=False, timeout=0.5)
    assert nodes_of(await cluster_apps(idle_workspace), "demo") == ["head", "worker-1", "worker-2"]

    def refuse_one_delete_in_three(event: Progress) -> None:
        if event.step == "delete" and event.done == 0:
            # Seed 0 draws 0.84, 0.76, 0.42: one of the three deletes is refused (403).
            idle_workspace.set_faults(error_rates={403: 0.5}, seed=0)

    refused = ClusterManager(
        manager.cml, idle_workspace.project_dir, progress=refuse_one_delete_in_three
    )
    try:
        with pytest.raises(ActionsFailed) as failed:
            await refused.down("demo")
    finally:
        idle_workspace.set_faults()
        await refused.observer.aclose()
    error = failed.value
    assert len(error.done) == 2 and len(error.failed) == 1
    assert isinstance(error.cause, CMLPermissionDenied)
    assert {d.node for d in error.done} | {f.action.node for f in error.failed} == {
        "head",
        "worker-1",
        "worker-2",
    }
    kept = error.failed[0].action.node
    assert nodes_of(await cluster_apps(idle_workspace), "demo") == [kept]
    left = read_desired(ClusterPaths(idle_workspace.project_dir, "demo"))
    assert left is not None and left.state == "deleting"  # nothing recreates the cluster
    assert "`raycai down demo` finishes" in str(error)

    assert await manager.down("demo") == [f"raycai-demo-{kept}"]
    assert nodes_of(await cluster_apps(idle_workspace), "demo") == []


def small_spec(workers: int):
    return spec_from_flags(
        name="demo", runtime=RUNTIME, workers=workers, cpu=1, memory=1, head_cpu=1, head_memory=1
    )


@pytest.mark.slow
async def test_a_scale_up_that_cannot_create_one_worker_reports_the_others(
    idle_workspace: WorkspaceHandle,
) -> None:
    """Through the CLI: what was added is printed as on success, then the failure and its
    cause; the new count stays stored, so the same command finishes once the cause goes."""
    handle = idle_workspace
    paths = make_cluster(handle, workers=1)
    raycai(handle, "scale", "demo", "1")  # worker-1 exists
    taken = subdomain(handle.project_id, "demo", "worker-3")
    async with CMLClient(handle.credentials()) as cml:
        squatter = await cml.create_application(new_app("someone-else", taken, "theirs.py"))

    result = raycai(handle, "scale", "demo", "+2", check=False)
    assert result.returncode == 1, result.stderr
    assert "added: worker-2" in result.stdout
    assert "scale of demo: 1 of 2 action(s) failed" in result.stderr
    assert "failed: create worker-3: " in result.stderr and "HTTP 409" in result.stderr
    assert "`raycai scale demo 3` finishes" in result.stderr
    assert stored_count(paths) == 3
    assert nodes_of(await cluster_apps(handle), "demo") == ["worker-1", "worker-2"]

    async with CMLClient(handle.credentials()) as cml:
        await cml.delete_application(squatter.id)
    finished = raycai(handle, "scale", "demo", "3")
    assert "added: worker-3" in finished.stdout
    assert nodes_of(await cluster_apps(handle), "demo") == ["worker-1", "worker-2", "worker-3"]
    assert ClusterPaths(handle.project_dir, "demo").cluster_json.is_file()


async def test_a_create_refused_by_a_taken_subdomain_is_a_conflict(
    idle_workspace: WorkspaceHandle, ops: tuple[ClusterManager, list[Progress]]
) -> None:
    """The refusal the scale test relies on: another application's subdomain is never
    mistaken for one of ours (no adoption, no retry loop)."""
    manager, _ = ops
    make_cluster(idle_workspace, workers=0)
    taken = subdomain(idle_workspace.project_id, "demo", "worker-1")
    await manager.cml.create_application(new_app("someone-else", taken, "theirs.py"))
    with pytest.raises(ActionsFailed) as failed:
        await manager.scale("demo", 1)
    assert isinstance(failed.value.cause, CMLConflict)
    assert failed.value.done == []
