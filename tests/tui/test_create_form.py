"""The create form: bad input refused with specific messages (nothing created), then a real
creation on the local workspace shown step by step."""

from __future__ import annotations

import re

from textual.widgets import Input, Select, Static

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.create import CreateScreen, Steps
from raycai_tui.widgets.clusters_table import ClustersTable
from tests.fixtures.workspace import RUNTIME
from tests.tui.support import (
    cluster_apps,
    make_app,
    until,
)


async def fill(pilot, screen: CreateScreen, values: dict[str, str]) -> None:
    """Type each value into its field as a user would (select all, then type)."""
    for widget_id, text in values.items():
        field = screen.query_one(f"#{widget_id}", Input)
        field.focus()
        await pilot.pause()
        field.value = ""
        await pilot.press(*text)


def problem(screen: CreateScreen, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}-problem", Static).render())


async def test_refuses_bad_input_then_creates_with_live_steps(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")

        await fill(
            pilot,
            screen,
            {
                "name": "Bad_Name",
                "head-cpu": "abc",
                "head-gpu": "1.5",
                "workers-count": "501",
                "workers-cpu": "0.5",
                "workers-memory": "0.1",
            },
        )
        assert "lower-case letters" in problem(screen, "name")
        assert problem(screen, "head-cpu") == "cpu must be a number, not 'abc'"
        assert "whole number" in problem(screen, "head-gpu")
        assert problem(screen, "workers-count") == "count must be at most 500"
        assert "at least 1 vCPU" in problem(screen, "workers-cpu")
        assert "at least 0.5 GB" in problem(screen, "workers-memory")
        await pilot.press("ctrl+s")
        assert "a runtime is required" in problem(screen, "runtime")
        assert app.screen is screen
        assert await cluster_apps(handle) == []
        assert not ClusterPaths(handle.project_dir, "t1").root.exists()

        await fill(
            pilot,
            screen,
            {
                "name": "t1",
                "head-cpu": "1",
                "head-gpu": "0",
                "workers-count": "2",
                "workers-cpu": "1",
                "workers-memory": "1.5",
            },
        )
        select.focus()
        await pilot.press("enter", "down", "enter")  # pick the first runtime
        assert select.value == RUNTIME
        assert all(not problem(screen, f) for f in ("name", "runtime", "workers-memory"))
        await pilot.press("ctrl+s")

        steps = screen.query_one(Steps)
        await until(pilot, lambda: "nodes joined Ray" in steps.text, "the creation steps")
        text = steps.text
        for expected in ("launcher scripts written", "head application", "head ready"):
            assert expected in text, (expected, text)
        assert re.search(r"nodes joined Ray: [0-3]/3", text), text
        # Workers are created concurrently: whichever finishes second shows 2/2.
        assert re.search(r"worker-[12]\b.* created\b.*\(2/2\)", text), text
        apps = {a.name: a for a in await cluster_apps(handle)}
        assert set(apps) == {"raycai-t1-head", "raycai-t1-worker-1", "raycai-t1-worker-2"}
        assert (apps["raycai-t1-head"].cpu, apps["raycai-t1-head"].memory) == (1, 8)
        assert (apps["raycai-t1-worker-1"].cpu, apps["raycai-t1-worker-1"].memory) == (1, 1.5)
        assert not apps["raycai-t1-head"].bypass_authentication

        await pilot.press("escape")  # stops watching; the cluster keeps starting
        assert isinstance(app.screen, ClustersScreen)
        table = app.screen.query_one(ClustersTable)
        await until(pilot, lambda: "t1" in table.keys, "the new cluster's row")

        # A failure during the creation is shown in the steps, and the form stays usable.
        await pilot.press("n")
        again = app.screen
        assert isinstance(again, CreateScreen)
        await until(pilot, lambda: again.query_one("#runtime", Select).value == RUNTIME, "")
        await fill(pilot, again, {"name": "t2", "workers-count": "0"})
        handle.set_faults(error_rates={403: 1.0})
        await pilot.press("ctrl+s")
        failed = again.query_one(Steps)
        await until(pilot, lambda: "creation failed" in failed.text, "the failure shown")
        assert "HTTP 403" in failed.text and again.creating is None
        handle.set_faults()


async def test_max_workers_turns_the_autoscaler_on_with_the_core_rules(
    tui_workspace: WorkspaceHandle,
) -> None:
    app = make_app(tui_workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        select.value = RUNTIME

        await fill(pilot, screen, {"name": "auto", "workers-count": "3", "workers-max": "2"})
        assert screen.build_spec() is None
        assert "at least min" in problem(screen, "workers-max")
        await fill(pilot, screen, {"workers-idle": "0"})
        assert "idle_timeout_s must be at least" in problem(screen, "workers-idle")

        await fill(pilot, screen, {"workers-count": "1", "workers-max": "4", "workers-idle": "60"})
        spec = screen.build_spec()
        assert spec is not None and spec.workers.autoscale
        assert (spec.workers.min, spec.workers.max, spec.workers.idle_timeout_s) == (1, 4, 60.0)

        screen.query_one("#workers-max", Input).value = ""  # empty: a fixed size
        await pilot.pause()
        spec = screen.build_spec()
        assert spec is not None and not spec.workers.autoscale
        assert (spec.workers.min, spec.workers.max) == (1, 1)
        assert not list(tui_workspace.project_dir.glob(".raycai/clusters/auto"))
