"""The cluster screen against the real local workspace: keys, faults and healing."""

from __future__ import annotations

import os
import signal

import pytest
from textual.widgets import Input, Static

from raycai_core.cluster.desired import read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.local import WorkspaceConfig, WorkspaceHandle
from raycai_tui.screens.addresses import AddressesScreen
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.log_sources import ALL_NODES
from raycai_tui.screens.scale import ScaleScreen
from raycai_tui.widgets.apps_table import AppsTable
from raycai_tui.widgets.events import EventsLog
from raycai_tui.widgets.ray_panel import RayPanel
from raycai_tui.widgets.status_line import StatusLine
from tests.fixtures.workspace import FAST_CONFIG
from tests.tui.support import (
    cluster_apps,
    create_cluster,
    make_app,
    notified,
    say_yes,
    until,
    until_async,
)


def status_of(screen: ClusterScreen, node: str) -> str:
    cells = screen.query_one(AppsTable).cells_of(node)
    return str(cells[3]) if cells else ""


async def open_cluster(pilot, app, name: str) -> ClusterScreen:
    table = app.screen.query_one("#clusters")
    await until(pilot, lambda: name in table.keys, f"the row of {name}")
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, ClusterScreen)
    return screen


async def worker_count(handle: WorkspaceHandle) -> int:
    return sum(1 for a in await cluster_apps(handle) if "-worker-" in a.name)


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_scale_restart_addresses_and_logs_keys(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_cluster(pilot, app, "demo")
        await until(pilot, lambda: status_of(screen, "worker-1") == "RUNNING", "worker RUNNING")
        await until(pilot, lambda: status_of(screen, "head") == "RUNNING", "head RUNNING")
        panel = screen.query_one(RayPanel)
        await until(pilot, lambda: "2 alive" in panel.summary_text, "Ray's state: 2 nodes")

        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ScaleScreen)
        assert dialog.query_one("#count", Input).value == "1"
        await pilot.press("escape")

        await pilot.press("plus")
        await until_async(pilot, lambda: _workers_are(handle, 2), "a second worker app")
        assert read_desired(ClusterPaths(handle.project_dir, "demo")).spec.workers.count == 2
        await until(pilot, lambda: "worker-2" in screen.query_one(AppsTable).keys, "its row")
        await until(pilot, lambda: "demo" not in app.operations, "the scale to end")
        await pilot.press("minus")
        await until_async(pilot, lambda: _workers_are(handle, 1), "back to one worker")
        await until(pilot, lambda: "worker-2" not in screen.query_one(AppsTable).keys, "row gone")
        events = screen.query_one(EventsLog).texts
        assert "workers 1 -> 2" in events and "workers 2 -> 1" in events

        await pilot.press("o")
        addresses = app.screen
        assert isinstance(addresses, AddressesScreen)
        head = next(a for a in await cluster_apps(handle) if a.name == "raycai-demo-head")
        port = handle.url.rsplit(":", 1)[1]
        assert addresses.addresses.app_url == f"http://{head.subdomain}.localhost:{port}"
        assert addresses.addresses.client_address.startswith("ray://127.")
        assert addresses.addresses.dashboard_url.startswith("http://127.")
        await pilot.press("t")  # copy the token: asks first, Cancel focused
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is addresses, "the dialog to close")
        assert app.clipboard == ""
        await pilot.press("t")
        await say_yes(pilot)
        token = ClusterPaths(handle.project_dir, "demo").auth_token.read_text().strip()
        await until(pilot, lambda: app.clipboard == token, "the token in the clipboard")
        await pilot.press("escape")

        work_line = screen.query_one("#work-line", Static)
        await until(pilot, lambda: "jobs: none" in str(work_line.render()), "the jobs line")
        await pilot.press("j")
        await until(pilot, lambda: type(app.screen).__name__ == "JobsScreen", "the jobs view")
        await pilot.press("escape")
        await pilot.press("v")
        await until(pilot, lambda: type(app.screen).__name__ == "ServeScreen", "the Serve view")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back on the cluster screen")

        table = screen.query_one(AppsTable)
        table.select_key("worker-1")
        await pilot.press("r")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.items[0].startswith("raycai-demo-worker-1")
        await say_yes(pilot)
        await until(
            pilot,
            lambda: any(
                "worker-1: restart requested" in t for t in screen.query_one(EventsLog).texts
            ),
            "the restart event",
        )

        await pilot.press("l")
        await until(pilot, lambda: app.screen is not screen, "the logs screen")
        assert type(app.screen).__name__ == "LogsScreen"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back on the cluster screen")
        await pilot.press("L")  # every node's launcher log, merged
        await until(pilot, lambda: app.screen is not screen, "the merged logs")
        assert type(app.screen).__name__ == "LogsScreen"
        assert app.screen.source == ALL_NODES
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "back on the cluster screen")


async def _workers_are(handle: WorkspaceHandle, count: int) -> bool:
    return await worker_count(handle) == count


async def test_faults_show_stale_data_and_recover(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=0)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_cluster(pilot, app, "demo")
        status = screen.query_one(StatusLine)
        await until(pilot, lambda: "CML: updated" in status.text, "a first good poll")

        handle.set_faults(error_rates={503: 1.0})
        await until(pilot, lambda: "CML: stale since" in status.text, "the stale line")
        assert "503" in status.text and "retry in" in status.text
        handle.set_faults(drop_rate=0.5, error_rates={429: 0.2, 500: 0.3}, latency_s=0.05)
        await pilot.pause(1.0)
        assert app.is_running and app.screen is screen

        handle.set_faults()
        await until(pilot, lambda: "CML: updated" in status.text, "recovery", timeout=40)
        assert "demo" in app.snapshot.members


@pytest.fixture
def workspace_config() -> WorkspaceConfig:
    # A failed app stays FAILED (the platform gives up at once): only healing restarts it.
    return WorkspaceConfig(**{**FAST_CONFIG, "restart_attempts": 0})


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_failed_worker_is_shown_then_healed_when_healing_is_turned_on(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=1)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_cluster(pilot, app, "demo")
        await until(pilot, lambda: status_of(screen, "worker-1") == "RUNNING", "worker RUNNING")
        worker = next(a for a in await cluster_apps(handle) if a.name.endswith("worker-1"))
        os.killpg(handle.app_info(worker.id)["pid"], signal.SIGKILL)  # its pod dies
        await until(pilot, lambda: status_of(screen, "worker-1") == "FAILED", "FAILED shown")
        await pilot.pause(1.5)
        assert status_of(screen, "worker-1") == "FAILED"  # healing is off: nobody restarts it

        await pilot.press("h")
        assert app.healing
        events = screen.query_one(EventsLog)
        await until(
            pilot,
            lambda: any("healed worker-1: restarted" in t for t in events.texts),
            "the heal event",
        )
        await until(pilot, lambda: status_of(screen, "worker-1") == "RUNNING", "RUNNING again")


async def test_one_cml_request_per_poll_whatever_is_open(tui_workspace: WorkspaceHandle) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=2)
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_cluster(pilot, app, "demo")
        await until(pilot, lambda: status_of(screen, "worker-2") == "RUNNING", "the workers up")
        await until(pilot, lambda: "demo" not in app.operations, "no operation running")
        handle.reset_stats()
        polls = app.polls
        await until(pilot, lambda: app.polls >= polls + 4, "four more polls")
        stats = handle.stats()
        done = app.polls - polls
        list_route = "GET /api/v2/projects/{project_id}/applications"
        # A poll in flight when the count was read may add one more request.
        assert set(stats["by_route"]) <= {list_route}, stats["by_route"]
        assert stats["total"] <= done + 1, (stats, done)


def stored_counts(handle: WorkspaceHandle, name: str = "train") -> dict[str, int]:
    spec = read_desired(ClusterPaths(handle.project_dir, name)).spec
    return {group: spec.group(group).count for group in spec.group_names}


async def group_apps(handle: WorkspaceHandle) -> list[str]:
    return sorted(a.name for a in await cluster_apps(handle) if a.name != "raycai-train-head")


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_worker_groups_shown_and_scaled_per_group(tui_workspace: WorkspaceHandle) -> None:
    """A cluster with groups `worker` and `gpu`: a row per group with its counts; `+` on a
    row of group gpu adds a gpu worker only; on the head row it says to pick a group; `s`
    asks for the group (prefilled with the selected row's, checked as typed)."""
    from raycai_core.spec import spec_from_flags
    from tests.fixtures.workspace import RUNTIME
    from tests.tui.support import client_for

    handle = tui_workspace
    spec = spec_from_flags(
        name="train",
        runtime=RUNTIME,
        head_cpu=1,
        head_memory=1,
        groups=["worker:count=1,cpu=1,memory=1", "gpu:count=1,cpu=1,memory=1,gpu=1"],
    )
    async with client_for(handle) as cml:
        await ClusterManager(cml, handle.project_dir).up(spec, wait=False)
    app = make_app(handle, heal=False)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_cluster(pilot, app, "train")
        table = screen.query_one(AppsTable)
        await until(pilot, lambda: status_of(screen, "gpu-1") == "RUNNING", "gpu-1 RUNNING")
        await until(pilot, lambda: status_of(screen, "worker-1") == "RUNNING", "worker-1 up")
        keys = table.keys
        assert keys[0] == "head" and set(keys) == {"head", "worker", "worker-1", "gpu", "gpu-1"}
        for group in ("worker", "gpu"):  # each group's row, then its workers
            assert keys.index(f"{group}-1") == keys.index(group) + 1, keys
        gpu_row = [str(cell) for cell in table.cells_of("gpu")]
        assert gpu_row[:4] == ["gpu", "group", "1 wanted", "1 run"], gpu_row
        await until(pilot, lambda: str(table.cells_of("gpu")[4]) == "1 joined", "gpu joined")
        title = str(screen.query_one("#cluster-title", Static).render())
        assert "workers in 2 groups: 2 wanted, 2 running" in title, title
        assert screen.active_bindings["plus"].binding.description == "+1 to group"

        table.select_key("head")
        await pilot.press("plus")
        assert notified(app, "select a worker row of the group to scale")
        assert app.operations.running() == []

        table.select_key("gpu-1")
        await pilot.press("plus")
        await until(pilot, lambda: "group gpu workers 1 -> 2" in events(app), "the gpu scale")
        assert stored_counts(handle) == {"worker": 1, "gpu": 2}
        assert await group_apps(handle) == [
            "raycai-train-gpu-1",
            "raycai-train-gpu-2",
            "raycai-train-worker-1",
        ]
        await until(pilot, lambda: "gpu-2" in table.keys, "gpu-2's row")
        assert table.keys.index("gpu-2") > table.keys.index("gpu")

        table.select_key("worker")  # a group's own row
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ScaleScreen)
        group_field = dialog.query_one("#group", Input)
        assert group_field.value == "worker"
        assert dialog.query_one("#count", Input).value == "1"
        group_field.focus()
        group_field.value = ""
        await pilot.press(*"gpx")
        assert "no group 'gpx'" in str(dialog.query_one("#group-problem", Static).render())
        await pilot.press("backspace", "u")
        assert str(dialog.query_one("#group-problem", Static).render()) == ""
        assert "Group gpu: 2 workers now" in str(dialog.query_one("#now", Static).render())
        count = dialog.query_one("#count", Input)
        count.focus()
        count.value = ""
        await pilot.press(*"-1", "enter")
        await until(pilot, lambda: "group gpu workers 2 -> 1" in events(app), "the dialog's scale")
        assert stored_counts(handle) == {"worker": 1, "gpu": 1}
        await until_async(pilot, lambda: _group_apps_are(handle, 2), "gpu-2 removed", 60)


async def _group_apps_are(handle: WorkspaceHandle, count: int) -> bool:
    return len(await group_apps(handle)) == count


def events(app) -> list[str]:
    return [event.text for event in app.events.of("train")]
