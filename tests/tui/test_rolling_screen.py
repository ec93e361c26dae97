"""The cluster screen's rolling update (`u`): the plan shown as typed, a refusal shown in
place, and the update carried out by the app's operations service, which leaving the
screen does not cancel. The local workspace with the stand-in Ray."""

from __future__ import annotations

from textual.widgets import Button, Input, Static

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.rolling_state import read_rolling
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.update import UpdateScreen
from tests.tui.support import cluster_apps, create_cluster, make_app, until, until_screen
from tests.tui.test_operations import events_of, open_from_list


async def worker_cpus(handle: WorkspaceHandle) -> list[float]:
    return sorted(a.cpu for a in await cluster_apps(handle) if "-demo-worker-" in a.name)


async def test_update_is_planned_as_typed_and_goes_on_after_leaving_the_screen(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_from_list(pilot, app)
        await until(pilot, lambda: screen.view is not None, "the cluster's data")
        await pilot.press("u")
        dialog = await until_screen(pilot, UpdateScreen, "the update dialog")
        plan = dialog.query_one("#plan-text", Static)
        apply = dialog.query_one("#apply", Button)
        assert apply.disabled  # nothing changed yet

        dialog.query_one("#ray-version", Input).value = "2.61.0"
        await pilot.pause(0.1)
        assert "Rerun with --restart-head" in str(plan.render()) and apply.disabled
        dialog.query_one("#ray-version", Input).value = "2.60.0"
        dialog.query_one("#group-cpu", Input).focus()  # its text selected: typing replaces it
        await pilot.press("2", "enter")  # enter: to the Update button, the plan in view
        text = str(plan.render())
        assert "replace 2 worker(s) one at a time" in text and not apply.disabled
        assert app.focused is apply

        await pilot.press("enter")
        await until(pilot, lambda: app.operations.get("demo", "update") is not None, "the update")
        title = screen.query_one("#cluster-title", Static)
        await until(pilot, lambda: "UPDATING" in str(title.render()), "UPDATING in the title")
        await pilot.press("escape")  # back to the list: the update goes on
        assert isinstance(app.screen, ClustersScreen)
        await until(
            pilot,
            lambda: "replaced" in (app.operations.labels().get("demo") or ""),
            "the update's progress in the list",
        )
        await until(
            pilot,
            lambda: any(t.startswith("update done (2 of 2") for t in events_of(app)),
            "the update's end",
            timeout=60,
        )
        assert await worker_cpus(handle) == [2.0, 2.0]
        record = read_rolling(ClusterPaths(handle.project_dir, "demo"))
        assert record is not None and record.state == "done"


async def test_an_update_from_another_terminal_shows_on_the_cluster_screen(
    tui_workspace: WorkspaceHandle,
) -> None:
    """A rolling update run by `raycai up` elsewhere (here the core's, as the CLI runs it)
    that stopped for want of quota: the cluster screen says so and what to do."""
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cluster.rolling import RollingUpdate, UpdateStopped
    from tests.test_rolling_standin import bigger
    from tests.tui.support import client_for

    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    handle.update_config(quota_cpu=3)  # head + 2 workers of 1 vCPU: no room for one more
    async with client_for(handle) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            await RollingUpdate(ops, bigger(), replace_wait_s=1.0, poll_s=0.1).run()
        except UpdateStopped:
            pass
        finally:
            await ops.observer.aclose()
    record = read_rolling(ClusterPaths(handle.project_dir, "demo"))
    assert record is not None and record.state == "stopped"
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_from_list(pilot, app)
        line = screen.query_one("#work-line", Static)
        await until(pilot, lambda: "update: stopped" in str(line.render()), "the update's line")
        assert "`raycai up` with the same spec tries again" in str(line.render())
