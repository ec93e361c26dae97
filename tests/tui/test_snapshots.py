"""SVG snapshots of the main screens, fed fixed data (polling off, fixed size, no clocks).

Update after an intended change with: ./dev test tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot
from textual.widgets import Input

from raycai_tui.app import RaycaiApp, Settings
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.create import CreateScreen
from raycai_tui.widgets.apps_table import AppsTable
from raycai_tui.widgets.ray_panel import RayPanel
from tests.tui.fixed_data import (
    RUNTIMES,
    cpu_history,
    demo_view,
    grouped_snapshot,
    snapshot,
    train_view,
)
from tests.tui.support import until

SIZE = (160, 40)


def fixed_app() -> RaycaiApp:
    return RaycaiApp(Settings(poll_s=0))


async def show_clusters(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, RaycaiApp)
    app.show_connected("CML ml-3f2a9c.example.cloudera.site", "ray-demo (p-7h2k-abcd)")
    app.apply_snapshot(snapshot())
    await pilot.pause()


async def show_cluster(pilot: Pilot[None]) -> None:
    await show_clusters(pilot)
    await pilot.press("enter")
    screen = pilot.app.screen
    assert isinstance(screen, ClusterScreen)
    panel = screen.query_one(RayPanel)
    for used in cpu_history():
        panel.add_sample(used, 2)
    screen.show_view(demo_view())
    await pilot.pause()


async def show_grouped_cluster(pilot: Pilot[None]) -> None:
    """A cluster with a CPU group and an autoscaled GPU group: a row per group, the gpu
    group's worker selected (what `+`, `-` and `s` act on)."""
    app = pilot.app
    assert isinstance(app, RaycaiApp)
    app.show_connected("CML ml-3f2a9c.example.cloudera.site", "ray-demo (p-7h2k-abcd)")
    app.apply_snapshot(grouped_snapshot())
    await pilot.pause()
    screen = ClusterScreen("train")
    await app.push_screen(screen)
    panel = screen.query_one(RayPanel)
    for used in cpu_history():
        panel.add_sample(used, 2)
    screen.show_view(train_view())
    await pilot.pause()
    screen.query_one(AppsTable).select_key("gpu-1")
    await pilot.pause()


async def show_cluster_before_its_data(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, RaycaiApp)
    app.show_connected("CML ml-3f2a9c.example.cloudera.site", "ray-demo (p-7h2k-abcd)")
    await app.push_screen(ClusterScreen("demo"))  # no snapshot yet: data keys dimmed
    await pilot.pause()


async def show_create_form(pilot: Pilot[None]) -> None:
    await show_clusters(pilot)
    screen = CreateScreen(existing={"demo", "etl-nightly", "scratch"})
    await pilot.app.push_screen(screen)
    await pilot.app.workers.wait_for_complete()
    screen.show_runtimes(RUNTIMES)
    screen.query_one("#runtime").value = RUNTIMES[0].image_identifier
    for widget_id, text in (("name", "demo"), ("workers-cpu", "0.5"), ("head-gpu", "1.5")):
        screen.query_one(f"#{widget_id}", Input).value = text
    for field in screen.query(Input):
        field.cursor_blink = False  # the same picture however long the machine takes
    screen.query_one("#workers-count", Input).focus()
    await pilot.pause()


def test_clusters_screen(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_clusters)


def test_cluster_screen(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_cluster)


def test_cluster_screen_with_worker_groups(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_grouped_cluster)


def test_cluster_screen_keys_wait_for_its_data(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_cluster_before_its_data)


def test_create_form_with_validation_messages(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_create_form)


def test_delete_confirmation(snap_compare) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZE, run_before=show_clusters, press=["ctrl+d"])


def test_help(snap_compare) -> None:
    assert snap_compare(
        fixed_app(), terminal_size=SIZE, run_before=show_cluster, press=["question_mark"]
    )


async def test_a_field_found_wrong_stays_marked_after_focus_leaves_it() -> None:
    """The picture above, without its race: the name names an existing cluster; leaving the
    field must not clear its mark (Textual's Input validates on blur, and without validators
    of its own it called every value valid)."""
    app = fixed_app()
    async with app.run_test(size=SIZE) as pilot:
        app.show_connected("CML ml-3f2a9c.example.cloudera.site", "ray-demo (p-7h2k-abcd)")
        screen = CreateScreen(existing={"demo"})
        await app.push_screen(screen)
        name = screen.query_one("#name", Input)
        name.focus()
        name.value = "demo"
        # The check runs on the Input's Changed message: a pause is not always enough for it
        # in CI's starved lane.
        await until(pilot, lambda: name.has_class("-invalid"), "the name marked wrong")
        await pilot.press("tab")
        await until(pilot, lambda: app.focused is not name, "the focus to leave the name")
        # A callback queued behind the Blur event: the blur's own validation has run by then.
        blur_handled = asyncio.Event()
        name.call_later(blur_handled.set)
        await blur_handled.wait()
        assert name.has_class("-invalid")
        assert "already exists" in str(screen.query_one("#name-problem").render())
