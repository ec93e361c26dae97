"""The clusters screen against the real local workspace: list, filter, help, delete, read-only."""

from __future__ import annotations

from raycai_core.local import WorkspaceHandle
from raycai_tui.app import RaycaiApp, Settings
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.help import HelpScreen
from raycai_tui.widgets.clusters_table import ClustersTable
from raycai_tui.widgets.status_line import StatusLine
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


async def test_lists_filters_helps_and_deletes_after_confirmation(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = app.screen
        assert isinstance(screen, ClustersScreen)
        table = screen.query_one(ClustersTable)
        await until(pilot, lambda: "demo" in table.keys, "the cluster's row")
        await until(pilot, lambda: cell(table, "demo", 2) == "RUNNING", "the head RUNNING")
        assert cell(table, "demo", 3).startswith("1/")  # desired/running/joined
        assert "project raycai-local" in app.sub_title and handle.url in app.sub_title
        assert "CML: updated" in screen.query_one(StatusLine).text

        await pilot.press("slash", *"zz")
        await until(pilot, lambda: not table.keys, "the filter to hide the row")
        await pilot.press("escape")
        await until(pilot, lambda: table.keys == ["demo"], "the row back")

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        ids = {row[2] for row in app.screen.rows}
        assert {"clusters.new", "clusters.delete", "clusters.filter", "app.help"} <= ids
        await pilot.press("escape")

        # The safe answer has the focus: enter cancels, nothing is deleted.
        await pilot.press("ctrl+d")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert {"raycai-demo-head", "raycai-demo-worker-1"} <= {
            item.split()[0] for item in dialog.items
        }
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")
        assert app.screen is screen
        assert len(await cluster_apps(handle)) == 2

        await pilot.press("ctrl+d")
        await say_yes(pilot)
        await until_async(pilot, lambda: _no_apps(handle), "the applications deleted")
        await until(pilot, lambda: not table.keys, "the row to go", timeout=10)


async def _no_apps(handle: WorkspaceHandle) -> bool:
    return not await cluster_apps(handle)


async def test_readonly_hides_every_mutating_key(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "ro", workers=0)
    app = make_app(handle, readonly=True)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = app.screen
        table = screen.query_one(ClustersTable)
        await until(pilot, lambda: "ro" in table.keys, "the cluster's row")
        keys = set(screen.active_bindings)
        assert {"n", "ctrl+d", "h"}.isdisjoint(keys) and {"enter", "slash", "q"} <= keys
        await pilot.press("n", "ctrl+d", "h")
        assert app.screen is screen and app.healing is False

        await pilot.press("enter")
        cluster = app.screen
        assert cluster is not screen
        keys = set(cluster.active_bindings)
        assert {"plus", "minus", "s", "r", "ctrl+d", "h"}.isdisjoint(keys)
        assert {"l", "o", "escape"} <= keys
        await pilot.press("plus", "s", "r")
        assert app.screen is cluster
        assert len(await cluster_apps(handle)) == 1  # the head alone, as created


async def test_start_up_finds_credentials_in_the_environment(
    tui_workspace: WorkspaceHandle, monkeypatch
) -> None:
    handle = tui_workspace
    monkeypatch.setenv("CML_HOST", handle.url)
    monkeypatch.setenv("CML_API_KEY", handle.api_key)
    monkeypatch.setenv("CML_PROJECT_ID", handle.project_id)
    monkeypatch.setenv("RAYCAI_PROJECT_DIR", str(handle.project_dir))
    app = RaycaiApp(Settings(poll_s=0.5))  # no target given: resolved as `raycai-tui` does
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        assert app.services.target.kind == "cml"
        domain = handle.url.split("://", 1)[1]
        assert app.sub_title == f"CML {domain} · project raycai-local ({handle.project_id})"
        status = app.screen.query_one(StatusLine)
        await until(pilot, lambda: "CML: updated" in status.text, "a first poll")


async def test_no_credentials_is_shown_and_the_app_stays_up(monkeypatch) -> None:
    for name in ("CML_HOST", "CML_API_KEY", "CML_PROJECT_ID", "CDSW_DOMAIN", "CDSW_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CDSW_APIV2_KEY", raising=False)
    monkeypatch.delenv("CDSW_PROJECT_ID", raising=False)
    app = RaycaiApp(Settings(local=False, poll_s=0.5))
    async with app.run_test(size=(160, 45)) as pilot:
        status = app.screen.query_one(StatusLine)
        await until(pilot, lambda: "not connected" in status.text, "the reason")
        assert "CML_HOST" in status.text and app.is_running
        await pilot.press("n")
        assert isinstance(app.screen, ClustersScreen)  # nothing to create on: told, not crashed


async def test_back_from_a_cluster_selects_its_row(tui_workspace: WorkspaceHandle) -> None:
    """Leaving a cluster's screen puts the list's cursor on that cluster, also when the screen
    was not opened from the list (the create form opens a cluster it made)."""
    handle = tui_workspace
    await create_cluster(handle, "alpha", workers=0)
    await create_cluster(handle, "beta", workers=0)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one(ClustersTable)
        await until(pilot, lambda: {"alpha", "beta"} <= set(table.keys), "both rows")
        assert table.selected_key == "alpha"
        app.push_screen(ClusterScreen("beta"))  # as the create form does once beta is ready
        await until_screen(pilot, ClusterScreen, "beta's screen")
        await pilot.press("escape")
        await until_screen(pilot, ClustersScreen, "the list")
        assert table.selected_key == "beta"
