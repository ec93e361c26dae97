"""The Serve view's keys against a stand-in Ray 2.60 dashboard: `d` deploys a config file of
the project (checked as typed), `x` deletes the selected application after asking, and an
unhealthy deployment's message shows under it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Static

from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.serve import (
    DeploymentsTable,
    DeployServeScreen,
    ServeAppsTable,
    ServeScreen,
)
from tests.fake_dashboard import FakeDashboard, running_dashboard, serve_running
from tests.tui.support import notified, say_yes, until, until_screen
from tests.tui.test_work_screens import POLL, make_app, publish


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        yield fake


def check_text(dialog: DeployServeScreen) -> str:
    return str(dialog.query_one("#config-check", Static).content)


async def type_path(pilot, dialog: DeployServeScreen, text: str) -> None:  # type: ignore[no-untyped-def]
    field = dialog.query_one("#config-path", Input)
    field.value = ""
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause()


async def test_d_deploys_a_config_file_checked_as_typed(dash: FakeDashboard, tmp_path: Path):
    paths = publish(tmp_path, dash)
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "a.yaml").write_text(
        "applications:\n- {name: a, route_prefix: /a, import_path: m:a, "
        "runtime_env: {working_dir: .}}\n"
    )
    (tmp_path / "serving" / "bad.yaml").write_text(
        "applications:\n- {name: b, route_prefix: b, import_path: m:b}\n"
    )
    (tmp_path / "serving" / "gone.yaml").write_text(
        "applications:\n- {name: g, import_path: m:g, runtime_env: {working_dir: nope}}\n"
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = ServeScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        await until(pilot, lambda: "Serve is not running" in screen.note, "not running")
        await pilot.press("d")
        dialog = await until_screen(pilot, DeployServeScreen, "the dialog")
        deploy = dialog.query_one("#deploy", Button)
        for text, problem in (
            ("serving/x.yaml", "no such file"),
            ("serving", "is not a file"),
            ("serving/gone.yaml", "does not exist"),
        ):
            await type_path(pilot, dialog, text)
            assert problem in check_text(dialog) and deploy.disabled
        await type_path(pilot, dialog, "serving/a.yaml")
        assert "deploys a" in check_text(dialog) and not deploy.disabled
        await pilot.press("enter")
        apps = screen.query_one(ServeAppsTable)
        await until(pilot, lambda: apps.keys == ["a"], "the deployed application listed")
        sent = dash.serve_configs[-1]["applications"][0]["runtime_env"]["working_dir"]
        assert sent == f"local://{(tmp_path / 'serving').resolve()}"
        assert json.loads(paths.serve_json.read_text()) == dash.serve_configs[-1]
        assert str(apps.cells_of("a")[3]) == f"{dash.url}/serve/a"  # type: ignore[index]

        # Ray refuses the next one: its reason is shown; nothing stored changes.
        await pilot.press("d")
        dialog = await until_screen(pilot, DeployServeScreen, "the dialog")
        await type_path(pilot, dialog, "serving/bad.yaml")
        await pilot.press("enter")
        await until(pilot, lambda: notified(app, "Route prefix must start with"), "Ray's refusal")
        assert [x["name"] for x in json.loads(paths.serve_json.read_text())["applications"]] == [
            "a"
        ]


async def test_x_deletes_the_selected_application_after_asking(dash: FakeDashboard, tmp_path: Path):
    paths = publish(tmp_path, dash)
    config = {
        "applications": [
            {"name": "a", "route_prefix": "/a", "import_path": "m:a"},
            {"name": "b", "route_prefix": "/b", "import_path": "m:b"},
        ]
    }
    paths.serve_json.write_text(json.dumps(config))
    from tests.fake_dashboard import serve_from_config

    dash.serve = serve_from_config(config)
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = ServeScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        apps = screen.query_one(ServeAppsTable)
        await until(pilot, lambda: apps.keys == ["a", "b"], "both applications")
        apps.select_key("b")
        await pilot.press("x")
        await until_screen(pilot, ConfirmScreen, "the question")
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        await pilot.press("enter")  # the safe answer
        await until(pilot, lambda: app.screen is screen, "back without deleting")
        assert not dash.serve_configs

        await pilot.press("x")
        await say_yes(pilot)
        await until(pilot, lambda: apps.keys == ["a"], "b deleted, a kept")
        assert [x["name"] for x in dash.serve_configs[-1]["applications"]] == ["a"]


async def test_an_unhealthy_deployment_shows_its_message_under_it(
    dash: FakeDashboard, tmp_path: Path
):
    publish(tmp_path, dash)
    dash.serve = serve_running(status="UNHEALTHY")
    deployment = dash.serve["applications"]["hello"]["deployments"]["Hello"]
    deployment["message"] = (
        "The deployment failed to start 3 times in a row.\nTraceback (most recent call last):\n"
        '  File "model.py", line 3, in __init__\nValueError: no weights at /models/x'
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = ServeScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        table = screen.query_one(DeploymentsTable)
        await until(pilot, lambda: "hello/Hello#3" in table.keys, "the message's lines")
        assert table.keys.index("hello/Hello#0") == table.keys.index("hello/Hello") + 1
        assert str(table.cells_of("hello/Hello#3")[3]) == "ValueError: no weights at /models/x"  # type: ignore[index]
        dash.serve = serve_running()
        await until(pilot, lambda: "hello/Hello#0" not in table.keys, "healthy: no message")
