"""A real Ray cluster driven through raycai-tui on the local workspace (private netns only).

Create with 1 worker from the form -> 2 nodes in the Ray panel -> `+` to 3 -> `-` back to
2 (drained, then deleted) -> delete from the list -> no application and no Ray process left.
(A head's pod lost with real Ray: test_healing's R2 and tests/serving/test_recovery_ray.py;
how the screen shows the gap and the recovery: the stand-in Ray's Pilot tests,
test_cluster_screen.py's faults and test_recovery_events.py.)
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select

from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.create import CreateScreen
from raycai_tui.widgets.ray_panel import RayPanel
from tests.fixtures.workspace import wait_for
from tests.helpers import ray_processes
from tests.tui.support import cluster_apps, make_app, say_yes, until, until_async, until_screen

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


async def test_create_scale_and_delete_a_real_ray_cluster(local_workspace: WorkspaceHandle) -> None:
    handle = local_workspace
    app = make_app(handle, poll_s=1.0)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CreateScreen)
        select = form.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        values = {
            "name": "e2e",
            "head-cpu": "1",
            "head-memory": "1",
            "workers-count": "1",
            "workers-cpu": "1",
            "workers-memory": "1",
        }
        for widget_id, text in values.items():
            form.query_one(f"#{widget_id}", Input).value = text
        select.focus()
        await pilot.press("enter", "down", "enter")
        await pilot.press("ctrl+s")

        # The form opens the cluster screen once every node joined Ray.
        screen = await until_screen(pilot, ClusterScreen, "2/2 joined", 180)
        panel = screen.query_one(RayPanel)
        await until(pilot, lambda: panel.nodes_alive == 2, "2 nodes alive in the Ray panel", 30)
        assert "2 alive" in panel.summary_text

        await pilot.press("plus")
        await until(pilot, lambda: panel.nodes_alive == 3, "a 3rd node alive", 120)
        await until(pilot, lambda: "e2e" not in app.operations, "the scale to finish", 30)

        await pilot.press("minus")
        await until(pilot, lambda: panel.nodes_alive == 2, "back to 2 alive nodes", 120)
        # Ray lists the drained node as dead before its application is deleted.
        await until(pilot, lambda: "e2e" not in app.operations, "the scale-down to finish", 60)
        assert "workers 2 -> 1" in [event.text for event in app.events.of("e2e")]
        workers = [a.name for a in await cluster_apps(handle) if "-worker-" in a.name]
        assert workers == ["raycai-e2e-worker-1"]

        await pilot.press("escape")
        assert isinstance(app.screen, ClustersScreen)
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await say_yes(pilot)
        await until_async(pilot, lambda: _no_apps(handle), "every application deleted", 60)
    await wait_for(lambda: not ray_processes(), timeout=60, interval=0.5)


async def _no_apps(handle: WorkspaceHandle) -> bool:
    return not await cluster_apps(handle)
