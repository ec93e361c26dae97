"""The jobs view shows the jobs a head that restarted without its state forgot: LOST, in red,
from raycai's ledger (jobs.json); a job submitted from the view is recorded there too."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.work.job_merge import clock
from raycai_core.work.ledger import read_ledger, record_submission
from raycai_tui.screens.jobs import JobsScreen, JobsTable, SubmitJobScreen
from tests.fake_dashboard import TOKEN, FakeDashboard, job, running_dashboard
from tests.tui.support import until
from tests.tui.test_work_screens import cell, make_app

POLL = 0.1


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        fake.jobs["raysubmit_new"] = job("raysubmit_new", "RUNNING", "python new.py")
        yield fake


def restarted_head(project: Path, dash: FakeDashboard, started_at: float) -> ClusterPaths:
    """A head of incarnation `inc-2`; the ledger has a job that ran under `inc-1`."""
    paths = ClusterPaths(project, "demo")
    paths.root.mkdir(parents=True)
    port = int(dash.url.rsplit(":", 1)[1])
    head = {"ip": "127.0.0.1", "gcs_port": 1, "dashboard_port": port, "client_port": 2,
            "incarnation": "inc-2", "started_at": started_at}  # fmt: skip
    paths.head_json.write_text(json.dumps(head))
    paths.auth_token.write_text(TOKEN)
    paths.auth_token.chmod(0o600)
    record_submission(paths, "raysubmit_old", "python old.py", "inc-1", now=started_at - 900)
    return paths


async def test_a_job_the_restarted_head_forgot_shows_lost_in_red(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    restart = time.time() - 30
    paths = restarted_head(tmp_path, dash, restart)
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 40)) as pilot:
        screen = JobsScreen("demo", tmp_path, poll_interval=POLL)
        await app.push_screen(screen)
        table = screen.query_one(JobsTable)
        await until(pilot, lambda: len(table.keys) == 2, "Ray's job and the lost one")
        assert cell(table, "raysubmit_old", 1) == "LOST"
        assert table.cells_of("raysubmit_old")[1].style == "bold red"  # type: ignore[index]
        assert f"lost when the head restarted at {clock(restart)}" in cell(
            table, "raysubmit_old", 5
        )
        assert cell(table, "raysubmit_new", 1) == "RUNNING"

        table.select_key("raysubmit_old")
        await pilot.press("enter")  # no logs to show: said, no screen pushed
        assert app.screen is screen

        await pilot.press("n")
        form = app.screen
        assert isinstance(form, SubmitJobScreen)
        await pilot.press(*"python tui.py")
        form.query_one("#field-env").value = "KEY=tui-secret"  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(dash.submitted) == 1, "the job submitted")
        await until(pilot, lambda: len(read_ledger(paths)) == 2, "the job recorded")
    recorded = read_ledger(paths)[-1]
    assert (recorded.entrypoint, recorded.head_incarnation) == ("python tui.py", "inc-2")
    assert "tui-secret" not in paths.jobs_json.read_text()
