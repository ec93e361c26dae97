"""Create -> every node joined -> cluster screen READY, in the fast tier: the real local
workspace, real launchers, and the stand-in Ray (tests/fixtures/stand_in_ray.py), whose
dashboard lists the nodes that joined."""

from __future__ import annotations

from textual.widgets import Input, Select, Static

from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.create import CreateScreen
from raycai_tui.widgets.apps_table import AppsTable
from raycai_tui.widgets.ray_panel import RayPanel
from tests.fixtures.workspace import RUNTIME
from tests.tui.support import make_app, until

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

        await until(pilot, lambda: isinstance(app.screen, ClusterScreen), "the cluster screen", 60)
        screen = app.screen
        assert isinstance(screen, ClusterScreen) and screen.cluster == "fast"
        panel = screen.query_one(RayPanel)
        await until(pilot, lambda: panel.nodes_alive == 3, "3 nodes alive in the Ray panel")
        await until(pilot, lambda: "joined Ray  ·  READY" in title(screen), "READY")
        assert "2 wanted, 2 running, 2 joined Ray" in title(screen)
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
