"""The create form shows `raycai up`'s checks (the doctor's that create nothing) before ctrl+s,
computed off the UI thread, and refuses a spec that would certainly fail: nothing created."""

from __future__ import annotations

import pytest
from textual.widgets import Select, Static

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from raycai_tui.screens.create import CreateScreen
from tests.fixtures.workspace import RUNTIME
from tests.tui.support import cluster_apps, make_app, until
from tests.tui.test_create_form import fill


def shown(screen: CreateScreen) -> str:
    widget = screen.query_one("#preflight", Static)
    return str(widget.render()) if widget.display else ""


async def test_the_form_warns_then_refuses_a_spec_whose_launchers_find_no_ray(
    tui_workspace: WorkspaceHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = tui_workspace
    venv = handle.project_dir / ".venv"
    app = make_app(handle)
    async with app.run_test(size=(160, 50)) as pilot:
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
            lambda: any("Not created" in str(n.message) for n in app._notifications),
            "the refusal's notification",
        )
        assert screen.creating is None and app.screen is screen
        assert await cluster_apps(handle) == []
        assert not ClusterPaths(handle.project_dir, "pf").root.exists()
