"""`z` suspends after asking, a suspended cluster is shown apart (SUSPENDED, when and why,
holding nothing of the quota), and `enter` on it asks to resume: Pilot on the local
workspace with the stand-in Ray."""

from __future__ import annotations

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cml.models import AppStatus
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.widgets.clusters_table import ClustersTable
from tests.tui.support import cluster_apps, create_cluster, make_app, say_yes, until, until_async


def cell(table: ClustersTable, key: str, column: int) -> str:
    cells = table.cells_of(key)
    return str(cells[column]) if cells else ""


async def statuses(handle: WorkspaceHandle) -> set[AppStatus]:
    return {a.status for a in await cluster_apps(handle)}


async def test_z_suspends_after_asking_and_enter_asks_to_resume(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    await create_cluster(handle, "zeta", workers=0)
    paths = ClusterPaths(handle.project_dir, "demo")
    app = make_app(handle)
    async with app.run_test(size=(180, 45)) as pilot:
        screen = app.screen
        assert isinstance(screen, ClustersScreen)
        table = screen.query_one(ClustersTable)
        await until(pilot, lambda: cell(table, "demo", 2) == "RUNNING", "demo's head RUNNING")
        assert table.keys == ["demo", "zeta"]
        table.move_cursor(row=table.keys.index("demo"))

        await pilot.press("z")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen) and dialog.title_text == "Suspend demo"
        await pilot.press("escape")  # the safe answer: nothing happens
        assert read_desired(paths).state == "active"  # type: ignore[union-attr]

        await pilot.press("z")
        await say_yes(pilot)
        await until_async(
            pilot, lambda: _all_stopped(handle), "every application STOPPED", timeout=60
        )
        await until(pilot, lambda: cell(table, "demo", 1) == "SUSPENDED", "SUSPENDED")
        desired = read_desired(paths)
        assert desired is not None and desired.suspension is not None
        assert desired.suspension.reason == "suspended from raycai-tui"
        # Apart (after the active clusters), holding nothing; when and why in the last column.
        await until(pilot, lambda: cell(table, "demo", 4) == "0", "no CPU held")
        assert table.keys == ["zeta", "demo"] and cell(table, "demo", 6) == "0"
        # The operation's own label ("suspending…") gives way once it has reported done.
        await until(pilot, lambda: "UTC" in cell(table, "demo", 8), "when, in the last column")
        assert "raycai-tui" in cell(table, "demo", 8)

        table.move_cursor(row=table.keys.index("demo"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the resume question")
        assert app.screen.title_text == "Resume demo"  # type: ignore[attr-defined]
        await say_yes(pilot)
        assert isinstance(app.screen, ClusterScreen)
        await until_async(
            pilot, lambda: _all_running(handle), "every application RUNNING", timeout=60
        )
        assert read_desired(paths).state == "active"  # type: ignore[union-attr]


async def _all_stopped(handle: WorkspaceHandle) -> bool:
    apps = [a for a in await cluster_apps(handle) if a.environment["RAYCAI_CLUSTER"] == "demo"]
    return len(apps) == 2 and {a.status for a in apps} == {AppStatus.STOPPED}


async def _all_running(handle: WorkspaceHandle) -> bool:
    apps = [a for a in await cluster_apps(handle) if a.environment["RAYCAI_CLUSTER"] == "demo"]
    return len(apps) == 2 and {a.status for a in apps} == {AppStatus.RUNNING}
