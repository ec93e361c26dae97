"""`up` requests every missing application at once (issue 12): the head first, the workers
right after it, not once the head has published its address; a stale head.json is removed
before any worker exists, so that no worker joins a dead head.

The workspace runs no process here (its quota is 0: every app waits in STARTING), so the
head never publishes: what is checked is what `up` asked of the API by then.
"""

from __future__ import annotations

import json

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import ClusterTimeout, Progress
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cluster_apps, nodes_of


async def test_workers_are_requested_before_the_head_is_up_and_never_see_a_stale_head(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = idle_workspace
    spec = spec_from_flags(
        name="at-once", runtime=RUNTIME, workers=3, cpu=1, memory=1, head_cpu=1, head_memory=1
    )
    paths = ClusterPaths(handle.project_dir, spec.name)
    paths.root.mkdir(parents=True)
    stale = {"ip": "127.0.0.99", "gcs_port": 6379, "incarnation": "dead", "dashboard_port": 1}
    paths.head_json.write_text(json.dumps(stale))

    steps: list[str] = []
    head_json_when_workers_requested: list[bool] = []

    def progress(event: Progress) -> None:
        steps.append(event.step)
        if event.step == "workers-create" and event.done == 0:
            head_json_when_workers_requested.append(paths.head_json.exists())

    ops = ClusterManager(cml_client, handle.project_dir, progress=progress)
    try:
        with pytest.raises(ClusterTimeout, match="did not publish its address"):
            await ops.up(spec, wait=False, timeout=1.5)
    finally:
        await ops.observer.aclose()

    apps = await cluster_apps(handle)
    assert nodes_of(apps, spec.name) == ["head", "worker-1", "worker-2", "worker-3"]
    assert "head-ready" not in steps  # every worker exists although the head is not up
    assert steps.index("head-created") < steps.index("workers-create") < steps.index("head-wait")
    assert head_json_when_workers_requested == [False]
    created = {a.environment["RAYCAI_NODE"]: a.created_at for a in apps}
    assert all(created["head"] <= at for at in created.values())
