"""`z` suspends after asking, a suspended cluster is shown apart (suspended, when and why,
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
from tests.tui.support import (
    cluster_apps,
    create_cluster,
    make_app,
    say_yes,
    until,
    until_async,
    until_screen,
)


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
        await until(pilot, lambda: cell(table, "demo", 1) == "suspended", "suspended")
        desired = read_desired(paths)
        assert desired is not None and desired.suspension is not None
        assert desired.suspension.reason == "suspended from raycai-tui"
        # Apart (after the active clusters), holding nothing; when and why in the last column.
        await until(pilot, lambda: cell(table, "demo", 4) == "0", "no CPU held")
        assert table.keys == ["zeta", "demo"] and cell(table, "demo", 6) == "0"
        # The operation's own label ("suspending…") gives way once it has reported done.
        await until(pilot, lambda: " ago: " in cell(table, "demo", 8), "when, in the last column")
        assert "raycai-tui" in cell(table, "demo", 8)

        table.move_cursor(row=table.keys.index("demo"))
        await pilot.press("enter")
        dialog = await until_screen(pilot, ConfirmScreen, "the resume question")
        assert dialog.title_text == "Resume demo"
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


async def test_a_cluster_suspended_elsewhere_is_told_and_ray_is_not_polled(
    tui_workspace: WorkspaceHandle,
) -> None:
    """Suspended while its screen is open (by the head's idle check, or `raycai suspend` in
    another terminal): an event says so, the Ray panel says why Ray is silent instead of
    reporting a dashboard that refuses connections, and Ray is not polled meanwhile."""
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cluster.suspend import suspend
    from raycai_tui.widgets.ray_panel import RayPanel
    from raycai_tui.widgets.status_line import StatusLine
    from tests.tui.support import client_for

    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        clusters = await until_screen(pilot, ClustersScreen, "the list")
        table = clusters.query_one(ClustersTable)
        await until(pilot, lambda: cell(table, "demo", 2) == "RUNNING", "demo's head RUNNING")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ClusterScreen)
        panel = screen.query_one(RayPanel)
        status = screen.query_one(StatusLine)
        await until(pilot, lambda: "Ray: updated" in status.text, "a Ray poll")

        async with client_for(handle) as cml:
            await suspend(ClusterManager(cml, handle.project_dir), "demo", reason="for a test")
        await until(pilot, lambda: "suspended" in panel.summary_text, "the panel's reason", 30)
        assert "Ray is not running: the cluster is suspended" in panel.summary_text
        texts = [event.text for event in app.events.of("demo")]
        assert any(t.startswith("suspended: for a test") for t in texts), texts
        assert "Ray:" not in status.text  # no stale Ray source, no retry announced
        polls = screen.ray_backoff.failures
        await pilot.pause(3.0)  # several of the app's ticks
        assert "Ray:" not in status.text and screen.ray_backoff.failures == polls
