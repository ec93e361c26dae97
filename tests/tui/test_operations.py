"""Operations that cannot go wrong: `+` is a delta on the stored count, keys wait for the
cluster's data, and scale/create/delete belong to the app, not to the screen that started them.

Against the real local workspace (with the stand-in Ray of tests/tui/support.py); the API is
slowed with the workspace's latency fault where an operation must still run when a key is hit.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from textual.widgets import Input, Static

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.local import WorkspaceHandle
from raycai_tui.app import QuitScreen, RaycaiApp
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.scale import ScaleScreen
from raycai_tui.widgets.apps_table import AppsTable
from raycai_tui.widgets.clusters_table import ClustersTable
from raycai_tui.widgets.events import EventsLog
from tests.fixtures.patience import patience
from tests.fixtures.workspace import session_pids
from tests.helpers import CREATE_ROUTE
from tests.tui.support import (
    client_for,
    cluster_apps,
    create_cluster,
    make_app,
    notified,
    say_yes,
    until,
    until_async,
    until_screen,
)


def signal_all(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def stored_workers(handle: WorkspaceHandle, name: str = "demo") -> int | None:
    desired = read_desired(ClusterPaths(handle.project_dir, name))
    return desired.spec.workers.count if desired is not None else None


async def worker_apps(handle: WorkspaceHandle, name: str = "demo") -> list[str]:
    return sorted(a.name for a in await cluster_apps(handle) if f"{name}-worker-" in a.name)


def events_of(app: RaycaiApp, name: str = "demo") -> list[str]:
    return [event.text for event in app.events.of(name)]


async def open_from_list(pilot, app: RaycaiApp, name: str = "demo") -> ClusterScreen:
    table = app.screen.query_one(ClustersTable)
    await until(pilot, lambda: name in table.keys, f"the row of {name}")
    table.select_key(name)
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, ClusterScreen)
    return screen


async def test_plus_right_after_opening_a_cluster_adds_a_worker(
    tui_workspace: WorkspaceHandle,
) -> None:
    """The issue's sequence: 2 workers, `enter` then `+` at once; it must give 3, never 1."""
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one(ClustersTable)
        await until(pilot, lambda: "demo" in table.keys, "the row of demo")
        await pilot.press("enter", "plus")
        assert isinstance(app.screen, ClusterScreen)
        await until(pilot, lambda: "workers 2 -> 3" in events_of(app), "the scale's result")
        assert stored_workers(handle) == 3
        assert await worker_apps(handle) == [f"raycai-demo-worker-{k}" for k in (1, 2, 3)]
        assert not any("removing" in text for text in events_of(app)), events_of(app)


async def test_enter_and_plus_in_one_read_of_the_terminal_add_a_worker(
    tui_workspace: WorkspaceHandle,
) -> None:
    """A terminal delivers `enter` and `+` typed at once in one read: the two key events are
    queued before either is handled (Pilot.press would wait between them). The `+` must
    reach the cluster screen, not fall on the list that is being left."""
    from textual import events

    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one(ClustersTable)
        await until(pilot, lambda: "demo" in table.keys, "the row of demo")
        app.post_message(events.Key("enter", "\r"))
        app.post_message(events.Key("plus", "+"))
        await until(pilot, lambda: "workers 2 -> 3" in events_of(app), "the scale's result")
        assert isinstance(app.screen, ClusterScreen)
        assert stored_workers(handle) == 3


async def test_a_key_typed_ahead_never_answers_the_delete_dialog(
    tui_workspace: WorkspaceHandle,
) -> None:
    """`ctrl+d` and `y` in one read: the `y` comes before the dialog is shown, and must not
    answer it (a dialog's answer is a key pressed while it is shown)."""
    from textual import events

    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one(ClustersTable)
        await until(pilot, lambda: "demo" in table.keys, "the row of demo")
        app.post_message(events.Key("ctrl+d", None))
        app.post_message(events.Key("y", "y"))
        await until_screen(pilot, ConfirmScreen, "the delete dialog")
        await pilot.pause(0.5)
        assert isinstance(app.screen, ConfirmScreen)  # still asking
        assert app.operations.running() == []
        await pilot.press("escape")
        assert await worker_apps(handle) == ["raycai-demo-worker-1"]
        assert stored_workers(handle) == 1


async def test_delete_from_the_cluster_screen_asks_there_and_no_keeps_the_screen(
    tui_workspace: WorkspaceHandle,
) -> None:
    """`ctrl+d` on a cluster asks on top of it: no leaves the user on that cluster (it used to
    drop them on the list), yes deletes it and goes back to the list."""
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        cluster = await open_from_list(pilot, app)
        await until(pilot, lambda: cluster.summary is not None, "the cluster's data")
        await pilot.press("ctrl+d")
        dialog = await until_screen(pilot, ConfirmScreen, "the delete dialog")
        assert app.screen_stack[-2] is cluster
        await until(pilot, lambda: dialog.answerable, "the question on screen")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is cluster, "back on the cluster")
        assert app.operations.running() == []

        await pilot.press("ctrl+d")
        await say_yes(pilot)
        await until(pilot, lambda: isinstance(app.screen, ClustersScreen), "back on the list")
        await until_async(pilot, lambda: _no_apps_of(handle), "every application deleted", 30)


async def _no_apps_of(handle: WorkspaceHandle) -> bool:
    return not await cluster_apps(handle)


async def test_keys_that_need_data_wait_for_the_first_snapshot(
    tui_workspace: WorkspaceHandle,
) -> None:
    """Before the cluster's first snapshot, `+` is dimmed and says why; it changes nothing."""
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    handle.set_faults(error_rates={503: 1.0})  # no poll succeeds: no snapshot yet
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        assert app.snapshot is None
        screen = ClusterScreen("demo")
        await app.push_screen(screen)
        await pilot.pause()
        bindings = screen.active_bindings
        for key in ("plus", "minus", "s", "ctrl+d"):
            assert bindings[key].enabled is False, key  # shown dimmed, not hidden
        await pilot.press("plus", "minus")
        assert notified(app, "Waiting for the first data of demo")
        assert app.operations.running() == []
        assert stored_workers(handle) == 2

        handle.set_faults()
        await until(pilot, lambda: app.snapshot is not None, "the first snapshot", 40)
        await until(pilot, lambda: screen.active_bindings["plus"].enabled, "+ enabled")
        await pilot.press("plus")
        await until(pilot, lambda: "workers 2 -> 3" in events_of(app), "the scale's result")
        assert stored_workers(handle) == 3
        assert len(await worker_apps(handle)) == 3


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_a_scale_goes_on_after_esc_and_the_reopened_screen_shows_it(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_from_list(pilot, app)
        handle.set_faults(latency_s=0.4)  # every API call slow: the scale is still running
        await pilot.press("plus", "plus", "escape")
        assert isinstance(app.screen, ClustersScreen)
        assert app.operations.get("demo", "scale") is not None
        table = app.screen.query_one(ClustersTable)

        def operation_cell() -> str:
            cells = table.cells_of("demo")
            return str(cells[-1]) if cells else ""

        await until(pilot, lambda: "scaling" in operation_cell(), "the list to show the scale")
        await until(pilot, lambda: "demo" not in app.operations, "the scale to end", 60)
        handle.set_faults()
        assert stored_workers(handle) == 3
        assert len(await worker_apps(handle)) == 3
        await until(pilot, lambda: operation_cell() == "", "the list's marker gone")

        reopened = await open_from_list(pilot, app)
        assert reopened is not screen
        rows = reopened.query_one(AppsTable)
        await until(pilot, lambda: "worker-3" in rows.keys, "the third worker's row")
        texts = reopened.query_one(EventsLog).texts
        # Two scales of +1, or one of +2 when the second `+` was queued before the first ran
        # (the operations service merges a waiting delta; CI's starved lane saw it).
        one_by_one = "workers 1 -> 2" in texts and "workers 2 -> 3" in texts
        assert one_by_one or "demo: workers 1 -> 3 (requested +2)" in texts, texts
        assert not reopened.query_one("#operations").display


async def test_the_operation_line_shows_a_running_scale(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_from_list(pilot, app)
        await until(pilot, lambda: screen.view is not None, "the cluster's view")
        handle.set_faults(latency_s=0.4)
        await pilot.press("plus")
        line = screen.query_one("#operations")
        await until(pilot, lambda: "scaling demo 1 → 2" in str(line.render()), "the line")
        assert line.display
        await until(pilot, lambda: "demo" not in app.operations, "the scale to end", 60)
        handle.set_faults()
        await until(pilot, lambda: not line.display, "the line hidden")


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_quitting_while_a_scale_runs_asks_and_says_what_stays(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_from_list(pilot, app)
        # The worker's creation slow: it still runs when the dialog answers, even on a loaded
        # machine (CI runs this beside real Ray, at the lowest priority: 30 s was not enough
        # there once, hence patience).
        handle.set_faults(latency_s=patience(30.0), routes=[CREATE_ROUTE])
        await pilot.press("plus")
        await until(pilot, lambda: stored_workers(handle) == 2, "the new count saved", 30)
        assert "demo" in app.operations
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, QuitScreen)
        assert any(
            "scaling demo" in item and "raycai scale demo" in item for item in dialog.items
        ), dialog.items
        assert app.focused is not None and app.focused.id == "no"  # the safe answer
        await pilot.press("n")
        assert app.is_running and isinstance(app.screen, ClusterScreen)
        assert "demo" in app.operations
        await pilot.press("q")
        await say_yes(pilot)
    handle.set_faults()
    # What was requested is saved; rerunning converges.
    assert stored_workers(handle) == 2
    async with client_for(handle) as cml:
        await ClusterManager(cml, handle.project_dir).scale("demo", 2)
    assert len(await worker_apps(handle)) == 2


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_removing_a_busy_worker_asks_first(tui_workspace: WorkspaceHandle) -> None:
    """Ray silent (its head stopped): a joined worker may run tasks, so `-` asks first."""
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_from_list(pilot, app)

        def joined() -> bool:
            row = screen.view.row("worker-1") if screen.view is not None else None
            return row is not None and row.joined

        await until(pilot, joined, "worker-1 joined")
        head = next(a for a in await cluster_apps(handle) if a.name == "raycai-demo-head")
        head_processes = session_pids(handle.app_info(head.id)["pid"])
        signal_all(head_processes, signal.SIGSTOP)  # Ray's dashboard stops answering
        try:
            await pilot.press("minus")
            dialog = await until_screen(pilot, ConfirmScreen, "the question", 30)
            assert dialog.items == ["worker-1"] and "running Ray tasks" in dialog.question
            await until(pilot, lambda: app.focused is not None, "the dialog's focus")
            assert app.focused.id == "no"  # the safe answer
            await pilot.press("enter")  # Cancel
            # The scale ended when it asked; the answer is handled when the dialog is gone.
            await until(
                pilot,
                lambda: any("cancelled: busy workers kept" in t for t in events_of(app)),
                "the answer's event",
            )
            assert "demo" not in app.operations
            assert stored_workers(handle) == 1 and len(await worker_apps(handle)) == 1

            await pilot.press("minus")
            await until_screen(pilot, ConfirmScreen, "asked again", 30)
        finally:
            signal_all(head_processes, signal.SIGCONT)
        await say_yes(pilot)
        await until(pilot, lambda: "workers 1 -> 0" in events_of(app), "the removal", 60)
        assert stored_workers(handle) == 0 and await worker_apps(handle) == []


async def test_the_scale_dialog_takes_a_count_or_a_change(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_from_list(pilot, app)
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ScaleScreen)
        field = dialog.query_one("#count", Input)
        assert field.value == "1"
        field.value = ""
        await pilot.press(*"2x", "enter")
        problem = str(dialog.query_one("#count-problem", Static).render())
        assert "not a worker count" in problem and app.screen is dialog
        field.value = ""
        await pilot.press(*"+2", "enter")
        await until(pilot, lambda: "workers 1 -> 3" in events_of(app), "the scale's result")
        assert stored_workers(handle) == 3 and len(await worker_apps(handle)) == 3


@pytest.mark.slow
async def test_a_scale_that_fails_part_way_shows_what_was_done_and_what_failed(
    tui_workspace: WorkspaceHandle,
) -> None:
    """+2 where worker-3's subdomain belongs to someone else's application: worker-2 is
    added and said so, worker-3's refusal is said with its cause, and the app goes on."""
    from raycai_core.naming import subdomain
    from tests.fixtures.workspace import new_app

    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    taken = subdomain(handle.project_id, "demo", "worker-3")
    async with client_for(handle) as cml:
        await cml.create_application(new_app("someone-else", taken, "theirs.py"))
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_from_list(pilot, app)
        await pilot.press("s")
        field = app.screen.query_one("#count", Input)
        field.value = ""
        await pilot.press(*"+2", "enter")
        await until(pilot, lambda: notified(app, "failed: scale of demo"), "the failure")
        texts = events_of(app)
        assert "scaling: worker-2: created (application raycai-demo-worker-2)" in texts, texts
        assert any(t.startswith("scaling: create worker-3: ") and "HTTP 409" in t for t in texts)
        assert "demo" not in app.operations
        assert stored_workers(handle) == 3
        assert await worker_apps(handle) == ["raycai-demo-worker-1", "raycai-demo-worker-2"]
