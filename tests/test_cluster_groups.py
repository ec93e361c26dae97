"""Worker groups in the core and the CLI: each group's application requests, and a two-group
cluster on the real local workspace with the real launchers and the stand-in Ray (fast, no
Ray): its applications, `raycai status` per group, scaling several groups at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from raycai_core.cluster.desired import read_desired, write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.lock import cluster_lock
from raycai_core.cluster.types import Progress, ScaleTarget
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE, app_name, subdomain
from raycai_core.spec import ClusterSpec, load_spec_text, parse_spec, spec_from_flags
from tests.fixtures.workspace import RUNTIME, wait_for
from tests.helpers import cluster_apps, nodes_of, raycai, status_json
from tests.test_reliability import assert_nodes, run_until
from tests.tui.support import client_for, fake_ray

pytestmark = pytest.mark.integration

__all__ = ["fake_ray"]  # the fixture

OTHER_RUNTIME = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-other:1"


def two_groups(name: str = "duo", **data: Any) -> ClusterSpec:
    return parse_spec(
        {
            "name": name,
            "head": {"runtime_identifier": RUNTIME, "cpu": 1, "memory": 1},
            "workers": {
                "data": {"count": 2, "cpu": 1, "memory": 1, **data},
                "gpu": {
                    "count": 1,
                    "cpu": 2,
                    "memory": 3,
                    "nvidia_gpu": 1,
                    "accelerator": "L40S",
                    "accelerator_label_id": "42",
                },
            },
        }
    )


async def test_each_groups_request_and_the_application_created_from_it(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    spec = two_groups()
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    project = idle_workspace.project_id
    gpu = ops._request(spec, "gpu-1")
    assert (gpu.name, gpu.subdomain) == (
        app_name("duo", "gpu-1"),
        subdomain(project, "duo", "gpu-1"),
    )
    assert (gpu.cpu, gpu.memory, gpu.nvidia_gpu) == (2, 3, 1)
    assert gpu.runtime_identifier == RUNTIME  # the head's, as the group names none
    assert gpu.accelerator_label_id == "42"
    assert gpu.environment["RAYCAI_GROUP"] == "gpu" and gpu.environment["RAYCAI_NODE"] == "gpu-1"
    assert gpu.script.endswith("worker.py")
    cpu = ops._request(spec, "data-2")
    assert (cpu.cpu, cpu.memory, cpu.nvidia_gpu, cpu.accelerator_label_id) == (1, 1, 0, "")
    assert "accelerator_label_id" not in cpu.to_body(project)
    assert ops._request(spec, HEAD_NODE).accelerator_label_id == ""
    # The workspace keeps the label the request carried.
    (idle_workspace.project_dir / gpu.script).parent.mkdir(parents=True, exist_ok=True)
    created = await cml_client.create_application(gpu)
    assert created.accelerator_label_id == "42"
    assert created.environment["RAYCAI_GROUP"] == "gpu"
    await ops.observer.aclose()


async def test_a_group_with_its_own_runtime(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    spec = two_groups(runtime_identifier=OTHER_RUNTIME)
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    assert ops._request(spec, "data-1").runtime_identifier == OTHER_RUNTIME
    assert ops._request(spec, "gpu-1").runtime_identifier == RUNTIME
    await ops.observer.aclose()


# -- a two-group cluster on the local workspace, with the real launchers and stand-in Ray ----


def grouped_spec(name: str = "duo") -> ClusterSpec:
    return spec_from_flags(
        name=name,
        runtime=RUNTIME,
        head_cpu=1,
        head_memory=1,
        groups=[
            "data:count=2,cpu=1,memory=1",
            "gpu:count=1,cpu=1,memory=2,gpu=1,accelerator=L40S,accelerator_label=42",
        ],
    )


DUO_NODES = ["data-1", "data-2", "gpu-1", "head"]


@pytest.fixture
async def duo(fake_ray: WorkspaceHandle) -> AsyncIterator[tuple[ClusterManager, list[Progress]]]:
    """Cluster `duo` (groups data and gpu) whose nodes joined the stand-in Ray."""
    events: list[Progress] = []
    async with client_for(fake_ray) as cml:
        ops = ClusterManager(cml, fake_ray.project_dir, progress=events.append)
        try:
            view = await ops.up(grouped_spec(), timeout=60)
            assert view.ready and view.ray_known
            yield ops, events
        finally:
            await ops.down("duo")
            await ops.observer.aclose()


@pytest.mark.timeout(120)
async def test_up_creates_each_groups_applications_and_status_shows_each_group(
    fake_ray: WorkspaceHandle, duo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, _ = duo
    apps = {a.environment["RAYCAI_NODE"]: a for a in await cluster_apps(fake_ray)}
    assert sorted(apps) == DUO_NODES
    project = fake_ray.project_id
    for node, app in apps.items():
        assert app.name == app_name("duo", node)
        assert app.subdomain == subdomain(project, "duo", node)
        assert app.runtime_identifier == RUNTIME
    assert apps["gpu-1"].subdomain != subdomain(project, "duo", "worker-1")
    sizes = {
        node: (a.cpu, a.memory, a.nvidia_gpu, a.accelerator_label_id) for node, a in apps.items()
    }
    assert sizes["data-1"] == sizes["data-2"] == (1, 1, 0, "")
    assert sizes["gpu-1"] == (1, 2, 1, "42")
    assert {apps[n].environment.get("RAYCAI_GROUP") for n in ("data-1", "data-2")} == {"data"}
    assert apps["gpu-1"].environment["RAYCAI_GROUP"] == "gpu"
    assert "RAYCAI_GROUP" not in apps["head"].environment

    text = raycai(fake_ray, "status", "duo").stdout
    assert "cluster duo: READY  workers desired 3, running 3, joined 3" in text
    assert "  group data: 2 desired, 2 running, 2 joined" in text
    assert "  group gpu: 1 desired, 1 running, 1 joined" in text
    data = status_json(fake_ray, "duo")
    assert [(g["name"], g["desired"], g["running"], g["joined"]) for g in data["groups"]] == [
        ("data", 2, 2, 2),
        ("gpu", 1, 1, 1),
    ]
    assert {n["node"]: n["group"] for n in data["nodes"]} == {
        "head": None,
        "data-1": "data",
        "data-2": "data",
        "gpu-1": "gpu",
    }

    # A rerun of `up` finds every group's applications: nothing is created or deleted.
    before = {node: a.id for node, a in apps.items()}
    await ops.up(grouped_spec(), timeout=60)
    after = {a.environment["RAYCAI_NODE"]: a.id for a in await cluster_apps(fake_ray)}
    assert after == before


@pytest.mark.timeout(120)
async def test_scale_changes_several_groups_in_one_locked_update(
    fake_ray: WorkspaceHandle, duo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, events = duo
    paths = ClusterPaths(fake_ray.project_dir, "duo")
    refused = raycai(fake_ray, "scale", "duo", "3", check=False)
    assert refused.returncode == 2, refused.stderr
    assert (
        "several worker groups (data, gpu)" in refused.stderr
        and "`raycai scale duo data=3`" in refused.stderr
    )
    unknown = raycai(fake_ray, "scale", "duo", "tpu=1", check=False)
    assert unknown.returncode == 2 and "no worker group 'tpu'" in unknown.stderr
    stored = read_desired(paths)
    assert stored is not None
    assert (stored.spec.group("data").count, stored.spec.group("gpu").count) == (2, 1)

    # Both groups change under one hold of the cluster's lock: while another operation holds
    # it, neither count moves; once it is free, both do.
    async with cluster_lock(paths):
        scaling = asyncio.create_task(
            ops.scale("duo", {"data": ScaleTarget(delta=1), "gpu": ScaleTarget(delta=-1)})
        )
        await wait_for(lambda: any(e.step == "lock" for e in events), timeout=10)
        assert read_desired(paths) == stored
    result = await scaling
    assert result.groups == {"data": (2, 3), "gpu": (1, 0)}
    assert result.added == ["data-3"] and result.removed == ["gpu-1"]
    moved = read_desired(paths)
    assert moved is not None
    assert (moved.spec.group("data").count, moved.spec.group("gpu").count) == (3, 0)
    assert nodes_of(await cluster_apps(fake_ray), "duo") == ["data-1", "data-2", "data-3", "head"]

    said = raycai(fake_ray, "scale", "duo", "gpu=1", "data=-1")
    assert "duo: group gpu: 0 -> 1 worker(s)" in said.stdout
    assert "duo: group data: 3 -> 2 worker(s)" in said.stdout
    assert nodes_of(await cluster_apps(fake_ray), "duo") == DUO_NODES


@pytest.mark.timeout(120)
async def test_heal_recreates_a_missing_worker_in_its_own_group(
    fake_ray: WorkspaceHandle, duo: tuple[ClusterManager, list[Progress]]
) -> None:
    ops, _ = duo
    apps = {m.node: m.app for m in await ops.members("duo")}
    await ops.cml.delete_application(apps["gpu-1"].id)  # someone deleted it by hand
    await wait_for(lambda: _gone(ops, "gpu-1"), timeout=20)
    healed = await ops.heal("duo")
    assert [(h.node, h.action) for h in healed] == [("gpu-1", "recreated")]
    now = {m.node: m.app for m in await ops.members("duo")}
    assert sorted(now) == DUO_NODES and now["gpu-1"].id != apps["gpu-1"].id
    assert now["gpu-1"].accelerator_label_id == "42" and now["gpu-1"].nvidia_gpu == 1


async def _gone(ops: ClusterManager, node: str) -> bool:
    return node not in {m.node for m in await ops.members("duo")}


GROUP_FLAGS = (
    "--runtime", RUNTIME, "--head-cpu", "1", "--head-memory", "1",
    "--group", "data:count=2,cpu=1,memory=1",
    "--group", "gpu:count=1,cpu=1,memory=2,gpu=1,accelerator=L40S,accelerator_label=42",
    "--timeout", "60",
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_up_killed_midway_then_rerun_converges_every_group(
    fake_ray: WorkspaceHandle,
) -> None:
    handle = fake_ray
    up = ("up", "duo", *GROUP_FLAGS)
    try:
        run_until(handle, "head application raycai-duo-head created", *up)
        nodes = nodes_of(await cluster_apps(handle), "duo")
        assert "head" in nodes and set(nodes) <= set(DUO_NODES), nodes
        # The workers are requested all at once right after the head: the kill usually lands
        # before or among them, and the next run is killed among those still missing. On a
        # starved machine all of them can land first (seen in CI); then that run is killed
        # where it waits for them to join.
        run_until(handle, ("created (application raycai-duo-", "nodes joined Ray"), *up)
        raycai(handle, *up)
        await assert_nodes(handle, "duo", DUO_NODES)
        assert status_json(handle, "duo")["ready"]
    finally:
        raycai(handle, "down", "duo", "--yes")
    await assert_nodes(handle, "duo", [])


def test_status_lines_say_min_and_target_for_autoscaled_groups_never_a_desired() -> None:
    from raycai_core.cli.render import group_line, view_to_json, workers_line
    from raycai_core.cluster.apps import group_by_cluster
    from raycai_core.cluster.desired import Desired
    from raycai_core.cluster.view import merge_cluster
    from tests.test_cluster_view import app, ray, record

    groups = ["data:count=1,cpu=1,memory=1", "gpu:min=0,max=4,gpu=1"]
    stored = Desired(spec=spec_from_flags(name="demo", runtime="rt", groups=groups))
    nodes = ["head", "data-1", "gpu-1", "gpu-2"]
    members = group_by_cluster([app("demo", n) for n in nodes])["demo"]
    records = {n: record(n, "joined") for n in nodes}
    view = merge_cluster("demo", stored, members, records, None, [ray("demo", n) for n in nodes])
    assert workers_line(view) == "workers min 1, max 5, target 3, joined 3"
    assert [group_line(g) for g in view.groups] == [
        "group data: 1 desired, 1 running, 1 joined",
        "group gpu: min 0, max 4, current 2, target 2",
    ]
    gpu = view_to_json(view)["groups"][1]
    assert (gpu["autoscale"], gpu["min"], gpu["max"], gpu["current"], gpu["target"]) == (
        True, 0, 4, 2, 2,
    )  # fmt: skip
    # One autoscaled [workers] table: its first line no longer reads like a fault.
    one = Desired(spec=spec_from_flags(name="demo", runtime="rt", min_workers=1, max_workers=7))
    many = ["head", *(f"worker-{k}" for k in range(1, 8))]
    members = group_by_cluster([app("demo", n) for n in many])["demo"]
    view = merge_cluster("demo", one, members, {n: record(n, "joined") for n in many}, None, None)
    assert workers_line(view) == "workers min 1, max 7, target 7, joined 7"
    assert group_line(view.groups[0]) == "group worker: min 1, max 7, current 7, target 7"
    # A group the spec no longer names, until `up` removes its workers.
    left = merge_cluster(
        "demo", one, group_by_cluster([app("demo", "old-1")])["demo"], {}, None, None
    )
    assert group_line(left.groups[-1]) == (
        "group old: not in the spec, 1 worker(s) left (`raycai up` removes them)"
    )


def test_scale_arguments_are_one_bare_count_or_one_per_group() -> None:
    import click

    from raycai_core.cli.cluster_cmds import WorkerCountType, scale_targets

    kind = WorkerCountType()
    assert kind.convert("gpu=+2", None, None) == ("gpu", ScaleTarget(delta=2))
    assert kind.convert("-1", None, None) == (None, ScaleTarget(delta=-1))
    for bad in ("=3", "gpu=x", "gpu="):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)
    assert scale_targets(((None, ScaleTarget(count=3)),)) == ScaleTarget(count=3)
    named = scale_targets((("data", ScaleTarget(delta=1)), ("gpu", ScaleTarget(delta=-1))))
    assert named == {"data": ScaleTarget(delta=1), "gpu": ScaleTarget(delta=-1)}
    with pytest.raises(click.BadParameter, match="not both"):
        scale_targets(((None, ScaleTarget(count=3)), ("gpu", ScaleTarget(count=1))))
    with pytest.raises(click.BadParameter, match="group gpu is given twice"):
        scale_targets((("gpu", ScaleTarget(count=3)), ("gpu", ScaleTarget(count=1))))


def test_scale_moves_each_named_groups_bounds_while_the_autoscaler_runs(
    idle_workspace: WorkspaceHandle,
) -> None:
    import json
    import time

    from raycai_core.cluster.desired import write_desired
    from raycai_core.launcher.render import render_cluster

    handle = idle_workspace
    spec = spec_from_flags(
        name="auto",
        runtime=RUNTIME,
        groups=["data:count=1,cpu=1,memory=1", "gpu:min=0,max=2,cpu=1,memory=1,gpu=1"],
    )
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    running = {"state": "running", "reason": None, "pid": 1, "restarts": 0}
    record = {"node": "head", "role": "head", "phase": "running", "autoscaler": running}
    paths.node_record("head").write_text(json.dumps({**record, "updated_at": time.time()}))

    refused = raycai(handle, "scale", "auto", "+1", check=False)
    assert refused.returncode == 2 and "several worker groups (data, gpu)" in refused.stderr
    said = raycai(handle, "scale", "auto", "gpu=3", "data=2")
    output = said.stdout + said.stderr
    assert "group gpu: autoscaling: min workers 0 -> 3, max 2 -> 3" in output
    assert "group data: autoscaling: min workers 1 -> 2, max 1 -> 2" in output
    moved = read_desired(paths)
    assert moved is not None
    gpu, data = moved.spec.group("gpu"), moved.spec.group("data")
    assert (gpu.min, gpu.max, gpu.autoscale) == (3, 3, True)
    assert (data.count, data.min, data.max) == (2, 2, 2)
    types = json.loads((paths.root / "autoscaler.json").read_text())["available_node_types"]
    assert (types["gpu"]["min_workers"], types["gpu"]["max_workers"]) == (3, 3)
    assert (types["data"]["min_workers"], types["data"]["max_workers"]) == (2, 2)
    assert nodes_of(asyncio.run(cluster_apps(handle)), "auto") == []  # the autoscaler's job


def test_cluster_json_keeps_the_order_of_the_groups(tmp_path: Path) -> None:
    """The order a user gave the groups is the order status and the TUI show them in."""
    spec = load_spec_text(
        'name = "order"\n[head]\nruntime_identifier = "img"\n'
        "[workers.zeta]\ncpu = 1\nmemory = 1\ncount = 1\n"
        "[workers.alpha]\ncpu = 1\nmemory = 1\ncount = 1\n"
    )
    paths = ClusterPaths(tmp_path, "order")
    write_desired(paths, spec)
    desired = read_desired(paths)
    assert desired is not None
    assert list(desired.spec.groups) == ["zeta", "alpha"]
