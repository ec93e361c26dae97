"""The create form shows `raycai up`'s checks (the doctor's that create nothing) before ctrl+s,
computed off the UI thread, and refuses a spec that would certainly fail: nothing created."""

from __future__ import annotations

import pytest
from textual.widgets import Select, Static

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.create import CreateScreen
from tests.fixtures.workspace import RUNTIME
from tests.test_doctor import set_shared_memory
from tests.tui.support import cluster_apps, make_app, notified, until
from tests.tui.test_create_form import fill


def shown(screen: CreateScreen) -> str:
    widget = screen.query_one("#preflight", Static)
    return str(widget.render()) if widget.display else ""


async def test_the_form_warns_then_refuses_a_spec_whose_launchers_find_no_ray(
    tui_workspace: WorkspaceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = tui_workspace
    set_shared_memory(handle, 40000)  # whatever this machine's /dev/shm: no warning for it
    venv = handle.project_dir / ".venv"
    app = make_app(handle)
    async with app.run_test(size=(160, 36)) as pilot:  # shorter than the form
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        await fill(pilot, screen, {"name": "pf", "workers-count": "1", "workers-memory": "1"})
        select.value = RUNTIME  # Python 3.11
        # The fake Ray's venv passes: nothing shown.
        await pilot.pause(0.5)
        assert shown(screen) == "" and screen.preflight == []

        # A venv made with another Python than the runtime's: a warning, not a refusal.
        (venv / "pyvenv.cfg").write_text("version_info = 3.10.4\n")
        await fill(pilot, screen, {"workers-count": "2"})
        await until(pilot, lambda: "runs Python 3.11" in shown(screen), "the Python warning")
        assert shown(screen).startswith("warning: FAIL  ray [pf]")

        # No Ray in the venv nor on PATH: refused, as `raycai up` refuses.
        (venv / "bin" / "ray").unlink()
        monkeypatch.setenv("PATH", "/nonexistent")
        await fill(pilot, screen, {"workers-count": "1"})
        await until(pilot, lambda: "refused: FAIL  ray [pf]" in shown(screen), "the refusal")
        assert "raycai setup-env" in shown(screen)
        await pilot.press("ctrl+s")
        await until(
            pilot,
            lambda: notified(app, "Not created"),
            "the refusal's notification",
        )
        form, refusal = screen.query_one("#form"), screen.query_one("#preflight")
        await until(pilot, lambda: form.region.contains_region(refusal.region), "it in view")
        assert screen.creating is None and app.screen is screen
        assert await cluster_apps(handle) == []
        assert not ClusterPaths(handle.project_dir, "pf").root.exists()


async def test_the_form_warns_for_the_projects_shared_memory(
    tui_workspace: WorkspaceHandle,
) -> None:
    """The project's shared_memory_limit, read when the form opens, against the object store
    of the spec as typed: below it a warning (Ray falls back to /tmp); for an object store
    above 10 GB, which Ray refuses to start without /dev/shm for it, a refusal."""
    handle = tui_workspace
    set_shared_memory(handle, 1000)
    app = make_app(handle)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.services is not None, "the connection")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, CreateScreen)
        select = screen.query_one("#runtime", Select)
        await until(pilot, lambda: select._options and len(select._options) > 1, "runtimes")
        select.value = RUNTIME
        await fill(pilot, screen, {"name": "pf", "workers-count": "1", "workers-memory": "2"})
        await until(pilot, lambda: "shared-memory" in shown(screen), "the warning")
        assert "warning: FAIL  shared-memory [pf]: project shared_memory_limit 1000 MB" in (
            shown(screen)
        )
        await fill(pilot, screen, {"workers-memory": "36"})
        await until(pilot, lambda: "refused: FAIL  shared-memory" in shown(screen), "refusal")
        assert "Ray refuses to start group worker" in shown(screen)
