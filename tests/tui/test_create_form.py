"""The create form: bad input refused with specific messages (nothing created), then a real
creation on the local workspace shown step by step."""

from __future__ import annotations

import re

import pytest
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
    until_async,
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


def step_in_view(screen: CreateScreen, key: str) -> bool:
    """The creation step `key` is shown and within the form's visible part (the steps are
    below the fields: on a terminal shorter than the form they are out of sight unless the
    form scrolls to them)."""
    lines = screen.query(f"#step-{key}")
    form = screen.query_one("#form")
    return bool(lines) and form.region.contains_region(lines.first().region)


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
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
        # Taken before: with the stand-in Ray, the cluster may be ready (and the form replaced
        # by the cluster screen) by the time the key press is processed on a busy machine.
        steps = screen.query_one(Steps)
        await pilot.press("ctrl+s")

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

        # A failure during the creation is shown in the steps, brought into view (the form is
        # taller than the terminal), and the form stays usable.
        await pilot.press("n")
        again = app.screen
        assert isinstance(again, CreateScreen)
        await until(pilot, lambda: again.query_one("#runtime", Select).value == RUNTIME, "")
        await fill(pilot, again, {"name": "t2", "workers-count": "0"})
        handle.set_faults(error_rates={403: 1.0})
        await pilot.press("ctrl+s")
        failed = again.query_one(Steps)
        await until(pilot, lambda: "creation failed" in failed.text, "the failure shown")
        await until(pilot, lambda: step_in_view(again, "failed"), "the failure in view")
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


@pytest.mark.slow  # a whole flow with slow API calls: the full suite runs it
async def test_the_form_creates_a_cluster_with_two_worker_groups(
    tui_workspace: WorkspaceHandle,
) -> None:
    """One group `worker` by default; a second group added, checked as typed (name rules,
    a name taken), a third added then removed; the core builds the spec and each group's
    applications get their names and sizes (the GPU group its accelerator label)."""
    from raycai_core.cluster.desired import read_desired
    from raycai_tui.screens.create import GroupForm

    handle = tui_workspace
    app = make_app(handle)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        select.value = RUNTIME
        assert [g.value("name") for g in screen.groups] == ["worker"]
        assert not screen.query_one("#workers-remove").display  # the last group stays

        await fill(pilot, screen, {"name": "tg", "head-cpu": "1", "head-memory": "1"})
        await fill(pilot, screen, {"workers-count": "1", "workers-cpu": "1", "workers-memory": "1"})
        await pilot.press("ctrl+g")
        await until(pilot, lambda: len(screen.groups) == 2, "a second group")
        second = screen.groups[1]
        assert second.prefix == "workers2" and second.value("name") == "group2"
        await fill(pilot, screen, {"workers2-name": "GPU"})
        assert "lower-case letters and digits" in problem(screen, "workers2-name")
        await fill(pilot, screen, {"workers2-name": "cpu"})
        assert "reserved" in problem(screen, "workers2-name")
        await fill(pilot, screen, {"workers2-name": "worker"})
        assert "another group is named 'worker'" in problem(screen, "workers2-name")
        await fill(pilot, screen, {"workers2-accelerator": "L40S!"})
        assert problem(screen, "workers2-accelerator")
        await fill(pilot, screen, {"workers2-max": "x"})
        assert problem(screen, "workers2-max")
        await fill(
            pilot,
            screen,
            {
                "workers2-name": "gpu",
                "workers2-count": "1",
                "workers2-max": "",
                "workers2-cpu": "1",
                "workers2-memory": "1",
                "workers2-gpu": "0",
                "workers2-accelerator": "L40S",
                "workers2-label": "12",
            },
        )
        assert all(
            not problem(screen, f"workers2-{key}")
            for key in ("name", "count", "max", "accelerator", "label")
        )
        # A label without a GPU: the core refuses it, under the label's field.
        assert screen.build_spec() is None
        assert "needs nvidia_gpu" in problem(screen, "workers2-label")
        await fill(pilot, screen, {"workers2-gpu": "1"})

        await pilot.press("ctrl+g")
        await until(pilot, lambda: len(screen.groups) == 3, "a third group")
        third = screen.groups[2]
        await pilot.click(f"#{third.prefix}-remove")
        await until(pilot, lambda: len(screen.groups) == 2, "the third group removed")
        assert [g.value("name") for g in screen.query(GroupForm)] == ["worker", "gpu"]

        await pilot.press("ctrl+s")
        await until_async(
            pilot, lambda: _apps_are(handle, 3), "the head and one worker of each group", 40
        )
        apps = {a.name: a for a in await cluster_apps(handle)}
        assert set(apps) == {"raycai-tg-head", "raycai-tg-worker-1", "raycai-tg-gpu-1"}
        gpu = apps["raycai-tg-gpu-1"]
        assert (gpu.cpu, gpu.memory, gpu.nvidia_gpu, gpu.accelerator_label_id) == (1, 1, 1, "12")
        assert apps["raycai-tg-worker-1"].nvidia_gpu == 0
        assert gpu.subdomain != apps["raycai-tg-worker-1"].subdomain
        spec = read_desired(ClusterPaths(handle.project_dir, "tg")).spec
        assert set(spec.group_names) == {"worker", "gpu"}  # cluster.json sorts its keys
        assert spec.group("gpu").accelerator == "L40S" and spec.group("worker").count == 1


async def test_the_form_left_as_it_is_makes_the_one_group_cluster_of_before(
    tui_workspace: WorkspaceHandle,
) -> None:
    from raycai_core.spec import spec_from_flags

    app = make_app(tui_workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        select.value = RUNTIME
        await fill(pilot, screen, {"name": "plain"})
        spec = screen.build_spec()
        before = spec_from_flags(
            name="plain",
            runtime=RUNTIME,
            workers=2,
            idle_timeout=300.0,
            cpu=2.0,
            memory=8.0,
            gpu=0,
            head_cpu=2.0,
            head_memory=8.0,
            head_gpu=0,
        )
        assert spec == before and spec.to_toml() == before.to_toml()


async def _apps_are(handle: WorkspaceHandle, count: int) -> bool:
    return len(await cluster_apps(handle)) == count
