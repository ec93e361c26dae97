"""The cluster screen says why a node waits: the local workspace's quota is too small for the
spec, so its applications stay STARTING, and past the (shortened) threshold each node's WHY
NOT READY names the quota and what the cluster's waiting applications request."""

from __future__ import annotations

import pytest

from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import ClusterTimeout
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.widgets.apps_table import AppsTable
from tests.tui.support import client_for, make_app, small_spec, until

pytestmark = pytest.mark.timeout(90)

REQUESTED = "cpu 3, memory 3 GB, gpu 0 requested by the 3 waiting applications"


def why_not_ready(screen: ClusterScreen, node: str) -> str:
    cells = screen.query_one(AppsTable).cells_of(node)
    return str(cells[-1]) if cells else ""


async def test_the_cluster_screen_names_the_quota_of_an_unscheduled_cluster(
    tui_workspace: WorkspaceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = tui_workspace
    handle.update_config(quota_memory=0.5)  # every node of small_spec asks 1 GB
    monkeypatch.setenv("RAYCAI_SCHEDULE_WAIT_S", "0.5")
    async with client_for(handle) as cml:
        manager = ClusterManager(cml, handle.project_dir)
        with pytest.raises(ClusterTimeout):  # the head never starts
            await manager.up(small_spec("demo", workers=2), timeout=1.5)
        await manager.observer.aclose()

    app = make_app(handle)
    async with app.run_test(size=(220, 45)) as pilot:
        table = app.screen.query_one("#clusters")
        await until(pilot, lambda: "demo" in table.keys, "the row of demo")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ClusterScreen)
        for node in ("head", "worker-1", "worker-2"):
            await until(
                pilot,
                lambda node=node: (
                    "waiting for the workspace to schedule it" in why_not_ready(screen, node)
                ),
                f"{node}'s reason",
            )
            reason = why_not_ready(screen, node)
            assert "the project may be out of quota" in reason and REQUESTED in reason
