"""The jobs and Serve views against a stand-in Ray 2.60 dashboard: data, keys, and bad or
partial answers (missing fields, 5xx, 401), which the views show while they keep working."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.credentials import Credentials, Secret
from raycai_core.target import Target
from raycai_tui.app import RaycaiApp, Settings
from raycai_tui.screens.confirm import ConfirmScreen
from raycai_tui.screens.jobs import JobLogsScreen, JobsScreen, JobsTable, SubmitJobScreen
from raycai_tui.screens.serve import DeploymentsTable, ServeAppsTable, ServeScreen
from raycai_tui.widgets.status_line import StatusLine
from tests.fake_dashboard import TOKEN, FakeDashboard, job, running_dashboard, serve_running
from tests.tui.support import say_yes, until

POLL = 0.1


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        fake.jobs["raysubmit_ok"] = job("raysubmit_ok", "SUCCEEDED", "python ok.py")
        fake.jobs["raysubmit_run"] = job("raysubmit_run", "RUNNING", "python long.py")
        fake.jobs["raysubmit_bad"] = job("raysubmit_bad", "FAILED", "python bad.py")
        fake.logs["raysubmit_ok"] = "epoch 1\nepoch 2\ndone\n"
        yield fake


def publish(project: Path, dash: FakeDashboard, token: str = TOKEN) -> ClusterPaths:
    paths = ClusterPaths(project, "demo")
    paths.root.mkdir(parents=True, exist_ok=True)
    port = int(dash.url.rsplit(":", 1)[1])
    head = {"ip": "127.0.0.1", "gcs_port": 1, "dashboard_port": port, "client_port": 2}
    paths.head_json.write_text(json.dumps(head))
    paths.auth_token.write_text(token)
    paths.auth_token.chmod(0o600)
    return paths


def make_app(project: Path) -> RaycaiApp:
    credentials = Credentials("http://127.0.0.1:1", Secret("k"), "proj", "test")
    return RaycaiApp(Settings(poll_s=0), target=Target(credentials, project, "local"))


def status_text(screen: JobsScreen | ServeScreen) -> str:
    return screen.query_one(StatusLine).text


def cell(table: JobsTable, key: str, column: int) -> str:
    cells = table.cells_of(key)
    return str(cells[column]) if cells else ""


async def test_jobs_view_lists_and_survives_bad_answers(dash: FakeDashboard, tmp_path: Path):
    paths = publish(tmp_path, dash)
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = JobsScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        table = screen.query_one(JobsTable)
        await until(pilot, lambda: len(table.keys) == 3, "three jobs listed")
        assert cell(table, "raysubmit_bad", 1) == "FAILED"
        assert "exit code 3" in cell(table, "raysubmit_bad", 5)
        assert table.cells_of("raysubmit_bad")[1].style == "bold red"  # type: ignore[index]

        dash.faults["/api/jobs/"] = 503
        await until(pilot, lambda: "stale" in status_text(screen), "stale after a 503")
        assert "GCS unavailable" in status_text(screen)
        assert len(table.keys) == 3  # the last list stays

        dash.faults["/api/jobs/"] = "partial"
        await until(pilot, lambda: cell(table, "raysubmit_ok", 1) == "UNKNOWN", "partial jobs")
        assert "stale" not in status_text(screen)

        dash.faults["/api/jobs/"] = "junk"
        await until(pilot, lambda: "Unexpected answer" in status_text(screen), "junk answer")

        dash.faults.clear()
        paths.auth_token.write_text("wrong-token")
        await until(pilot, lambda: "not this cluster's token" in status_text(screen), "403")
        paths.auth_token.write_text(TOKEN)
        await until(pilot, lambda: "stale" not in status_text(screen), "recovered")
        assert cell(table, "raysubmit_ok", 1) == "SUCCEEDED"

        paths.head_json.unlink()
        await until(pilot, lambda: "not published" in status_text(screen), "no head.json")
        assert screen.is_attached  # never crashed


async def test_jobs_view_without_any_token_says_so(dash: FakeDashboard, tmp_path: Path):
    publish(tmp_path, dash, token="")
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = JobsScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        await until(pilot, lambda: "requires a Ray token" in status_text(screen), "401 shown")


async def test_submit_stop_and_logs_keys(dash: FakeDashboard, tmp_path: Path):
    publish(tmp_path, dash)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 45)) as pilot:
        screen = JobsScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        table = screen.query_one(JobsTable)
        await until(pilot, lambda: len(table.keys) == 3, "jobs listed")

        await pilot.press("n")
        form = app.screen
        assert isinstance(form, SubmitJobScreen)
        await pilot.press(*"python train.py")
        form.query_one("#field-cpus").value = "lots"  # type: ignore[attr-defined]
        await pilot.pause()
        assert "not a number" in str(form.query_one("#error-cpus").render())
        assert form.query_one("#submit").disabled  # type: ignore[attr-defined]
        form.query_one("#field-cpus").value = "1"  # type: ignore[attr-defined]
        form.query_one("#field-env").value = "A=1 B='two words'"  # type: ignore[attr-defined]
        form.query_one("#field-working_dir").value = "src"  # type: ignore[attr-defined]
        await pilot.pause()
        assert not form.query_one("#submit").disabled  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(dash.submitted) == 1, "the job submitted")
        body = dash.submitted[0]
        assert body["entrypoint"] == "python train.py" and body["entrypoint_num_cpus"] == 1
        assert body["runtime_env"]["env_vars"] == {"A": "1", "B": "two words"}
        assert body["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")
        assert len(dash.packages) == 1
        await until(pilot, lambda: len(table.keys) == 4, "the new job listed")

        table.select_key("raysubmit_run")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await say_yes(pilot)
        await until(pilot, lambda: cell(table, "raysubmit_run", 1) == "STOPPED", "stopped")

        table.select_key("raysubmit_ok")
        await pilot.press("enter")
        logs = app.screen
        assert isinstance(logs, JobLogsScreen)
        await until(pilot, lambda: "SUCCEEDED" in logs.state, "the log streamed to its end")
        assert logs.view.lines()[:3] == ["epoch 1", "epoch 2", "done"]
        # The log pane's keys, as on the node logs screen: filter, only the matches, save.
        await pilot.press("slash", *"epoch", "enter", "m")
        assert logs.view.displayed_count == 2
        await pilot.press("S")
        await until(pilot, lambda: logs.pane.last_saved, "the save")
        assert logs.pane.last_saved.parent == tmp_path
        assert logs.pane.last_saved.read_text().startswith("epoch 1\nepoch 2\ndone\n")
        await pilot.press("escape")
        assert app.screen is screen


async def test_serve_view_states(dash: FakeDashboard, tmp_path: Path):
    publish(tmp_path, dash)
    app = make_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = ServeScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        await until(pilot, lambda: "Serve is not running" in screen.note, "not running")

        dash.serve = serve_running(replicas=2)
        apps = screen.query_one(ServeAppsTable)
        deployments = screen.query_one(DeploymentsTable)
        await until(pilot, lambda: apps.keys == ["hello"], "the application")
        assert str(apps.cells_of("hello")[3]) == f"{dash.url}/serve/hello"  # type: ignore[index]
        assert str(deployments.cells_of("hello/Hello")[2]) == "2/2 RUNNING"  # type: ignore[index]

        dash.faults["/api/serve/applications/"] = 503
        await until(pilot, lambda: "stale" in status_text(screen), "stale after a 503")
        assert apps.keys == ["hello"]

        dash.faults["/api/serve/applications/"] = "partial"
        await until(pilot, lambda: "stale" not in status_text(screen), "partial answer shown")
        assert str(deployments.cells_of("hello/D")[1]) == "UNKNOWN"  # type: ignore[index]

        dash.faults.clear()
        dash.serve = serve_running(status="UNHEALTHY")
        await until(
            pilot,
            lambda: (
                "ValueError" in str((deployments.cells_of("hello/Hello") or ["", "", "", ""])[3])
            ),
            "the unhealthy deployment's message",
        )

        dash.serve = None
        await until(pilot, lambda: "lacks ray[serve]" in screen.note, "501 explained")
        assert screen.is_attached
