"""Create -> every node joined -> cluster screen READY, in the fast tier: the real local
workspace, real launchers, and the stand-in Ray (tests/fixtures/stand_in_ray.py), whose
dashboard lists the nodes that joined."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static

from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import ClusterTimeout
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.create import CreateScreen, Steps
from raycai_tui.widgets.apps_table import AppsTable
from raycai_tui.widgets.ray_panel import RayPanel
from raycai_tui.widgets.status_line import StatusLine
from tests.fixtures.workspace import RUNTIME
from tests.tui.support import client_for, make_app, set_ray_down, until, until_screen

RAY_COLUMN = [column.key for column in AppsTable.COLUMNS].index("ray")


def ray_state(screen: ClusterScreen, node: str) -> str:
    cells = screen.query_one(AppsTable).cells_of(node)
    return str(cells[RAY_COLUMN]) if cells else ""


def title(screen: ClusterScreen) -> str:
    return str(screen.query_one("#cluster-title", Static).render())


async def test_created_cluster_opens_ready_with_every_node_alive_in_ray(
    tui_workspace: WorkspaceHandle,
) -> None:
    app = make_app(tui_workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CreateScreen)
        select = form.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        values = {"name": "fast", "head-cpu": "1", "workers-count": "2", "workers-cpu": "1"}
        for widget_id, text in values.items():
            field = form.query_one(f"#{widget_id}", Input)
            field.focus()
            await pilot.pause()
            field.value = ""
            await pilot.press(*text)
        select.focus()
        await pilot.press("enter", "down", "enter")
        assert select.value == RUNTIME
        await pilot.press("ctrl+s")

        screen = await until_screen(pilot, ClusterScreen, "the cluster screen", 60)
        assert screen.cluster == "fast"
        panel = screen.query_one(RayPanel)
        await until(pilot, lambda: panel.nodes_alive == 3, "3 nodes alive in the Ray panel")
        await until(pilot, lambda: "joined Ray  ·  READY" in title(screen), "READY")
        # Ray may list a worker before the workspace calls its application RUNNING (its
        # port answers a moment after its launcher joined Ray): both, in time.
        await until(pilot, lambda: "2 wanted, 2 running, 2 joined Ray" in title(screen), "2/2/2")
        await until(
            pilot,
            lambda: (
                [ray_state(screen, n) for n in ("head", "worker-1", "worker-2")] == ["ALIVE"] * 3
            ),
            "every node ALIVE in the Ray column",
        )
        summary = panel.summary_text
        assert "3 alive" in summary and "0 dead" in summary and "not answering" not in summary
        assert "CPU 0/3" in summary  # the nodes' CPUs, from the dashboard's cluster status


async def test_the_form_and_wait_ready_call_a_cluster_ready_only_once_ray_answers(
    tui_workspace: WorkspaceHandle,
) -> None:
    """Every launcher says joined while Ray's dashboard is down: neither the form nor
    `ClusterManager.wait_ready` (`raycai up --wait`) calls the cluster ready; both do once
    Ray answers (one rule: `ClusterView.ready`, one watch: cluster/readiness.py)."""
    handle = tui_workspace
    set_ray_down(handle, True)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, CreateScreen)
        select = form.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        select.value = RUNTIME
        for widget_id, text in {"name": "slow", "head-cpu": "1", "workers-count": "1"}.items():
            form.query_one(f"#{widget_id}", Input).value = text
        await pilot.pause()
        await pilot.press("ctrl+s")

        steps = form.query_one(Steps)
        await until(
            pilot,
            lambda: "nodes joined Ray: 2/2 by the launchers' word" in steps.text,
            "every launcher joined",
            60,
        )
        assert "Ray does not answer" in steps.text
        # The app's watch (not the form's): the clusters list's status line says it too.
        clusters = app.screen_stack[-2]
        assert isinstance(clusters, ClustersScreen)
        note = "slow: nodes joined Ray: 2/2 by the launchers' word"
        await until(pilot, lambda: note in clusters.query_one(StatusLine).text, "the note")
        async with client_for(handle) as cml:
            manager = ClusterManager(cml, handle.project_dir)
            with pytest.raises(ClusterTimeout, match="every node joined, but Ray does not answer"):
                await manager.wait_ready("slow", timeout=1.0)
            assert app.screen is form and form.joining  # still watching, not "ready"

            set_ray_down(handle, False)
            view = await manager.wait_ready("slow", timeout=30)
            assert view.ready and view.ray_known and view.nodes_joined == 2
        screen = await until_screen(pilot, ClusterScreen, "the cluster screen")
        assert steps.text.endswith("nodes joined Ray: 2/2")
        await until(pilot, lambda: "joined Ray  ·  READY" in title(screen), "READY")
        assert "slow" not in app.joining  # the watch ended
        await until(pilot, lambda: "slow:" not in clusters.query_one(StatusLine).text, "no note")
