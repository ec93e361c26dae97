"""The app's cluster-list poll, the cluster screen's Ray poll and the Jobs/Serve screens' polls
all go through the one Poller: never two polls at a time however slow the answer and however
often a poll is asked for, backoff with a stale-since line while failing, recovery after, and
a covered screen that polls nothing until it is shown again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.local import WorkspaceHandle
from raycai_tui.poller import Poller
from raycai_tui.screens.cluster import ClusterScreen
from raycai_tui.screens.jobs import JobsScreen
from raycai_tui.screens.serve import ServeScreen
from raycai_tui.widgets.ray_panel import RayPanel
from raycai_tui.widgets.status_line import StatusLine
from tests.fake_dashboard import FakeDashboard, job, running_dashboard
from tests.tui.support import create_cluster, make_app, set_ray_down, until
from tests.tui.test_work_screens import make_app as make_offline_app
from tests.tui.test_work_screens import publish

LIST_ROUTE = "GET /api/v2/projects/{project_id}/applications"


async def test_cluster_list_poll_never_overlaps_a_slow_answer(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    app = make_app(handle, poll_s=0.1)
    async with app.run_test(size=(160, 45)) as pilot:
        assert isinstance(app.poller, Poller)
        await until(pilot, lambda: app.polls >= 1, "a first poll")
        handle.set_faults(latency_s=0.3)  # PUT /_local/faults: every answer is slow
        await pilot.pause(0.5)  # the poll in flight when the latency came has ended
        handle.reset_stats()
        polls = app.polls
        while app.polls < polls + 4:  # an operation ending, again and again, asks for polls
            app.poll_soon()
            await pilot.pause(0.02)
        stats = handle.stats()
        done = app.polls - polls
        assert set(stats["by_route"]) <= {LIST_ROUTE}, stats["by_route"]
        # One request per poll; the one in flight when counted may add one more.
        assert stats["total"] <= done + 1, (stats, done)


async def test_cluster_screen_ray_poll_backs_off_recovers_and_pauses_while_covered(
    tui_workspace: WorkspaceHandle,
) -> None:
    handle = tui_workspace
    await create_cluster(handle, "demo", workers=0)
    app = make_app(handle, poll_s=0.2)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one("#clusters")
        await until(pilot, lambda: "demo" in table.keys, "the cluster's row")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ClusterScreen) and isinstance(screen.ray_poller, Poller)
        status = screen.query_one(StatusLine)
        panel = screen.query_one(RayPanel)
        await until(pilot, lambda: "1 alive" in panel.summary_text, "Ray's answer", 40)
        await until(pilot, lambda: "Ray: updated" in status.text, "a good Ray poll")

        set_ray_down(handle, True)
        await until(pilot, lambda: "Ray: stale since" in status.text, "the stale line")
        assert "retry in" in status.text
        assert "not answering since" in panel.summary_text
        assert screen.view is not None and not screen.view.ready  # unconfirmed: not READY
        await until(pilot, lambda: screen.ray_backoff.failures >= 2, "backing off")
        assert screen.ray_poller.due_in is not None and screen.ray_poller.due_in > 0.2

        set_ray_down(handle, False)
        screen.ray_poller.poll_now()  # as an operation's end does (else the backoff waits)
        await until(pilot, lambda: "Ray: updated" in status.text, "recovery")
        await until(pilot, lambda: screen.view is not None and screen.view.ready, "READY")

        # Covered by the Jobs screen: the cluster screen's Ray poll waits, the jobs poll runs.
        await pilot.press("j")
        jobs = app.screen
        assert isinstance(jobs, JobsScreen) and isinstance(jobs.poller, Poller)
        await until(pilot, lambda: screen.ray_poller.waiting, "the covered screen's poll due")
        ray_polls = screen.ray_poller.polls
        await until(pilot, lambda: jobs.polls >= 3, "the jobs screen polling")
        assert screen.ray_poller.polls == ray_polls  # nothing polled for a covered screen
        await pilot.press("escape")
        await until(pilot, lambda: screen.ray_poller.polls > ray_polls, "the Ray poll resumed")


@pytest.fixture
async def slow_dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        fake.jobs["raysubmit_ok"] = job("raysubmit_ok", "SUCCEEDED", "python ok.py")
        fake.delay_s = 0.3
        yield fake


@pytest.mark.parametrize("kind", [JobsScreen, ServeScreen])
async def test_jobs_and_serve_polls_never_overlap_a_slow_dashboard(
    slow_dash: FakeDashboard, tmp_path: Path, kind: type[JobsScreen] | type[ServeScreen]
) -> None:
    publish(tmp_path, slow_dash)
    app = make_offline_app(tmp_path)
    async with app.run_test(size=(170, 40)) as pilot:
        screen = kind("demo", tmp_path, poll_interval=0.05)
        await app.push_screen(screen)
        await until(pilot, lambda: screen.polls >= 1, "a first poll")
        polls = screen.polls
        while screen.polls < polls + 3:
            await pilot.press("r")  # refresh, hammered while the answer is slow
            await pilot.pause(0.02)
        assert slow_dash.most_in_flight == 1
        route = "/api/jobs/" if kind is JobsScreen else "/api/serve/applications/"
        sent = sum(1 for _, path in slow_dash.requests if path == route)
        assert sent <= screen.polls + 1, (sent, screen.polls)


async def test_jobs_backoff_grows_with_each_failure_and_says_since_when(tmp_path: Path) -> None:
    async with running_dashboard() as dash:
        publish(tmp_path, dash)
        app = make_offline_app(tmp_path)
        async with app.run_test(size=(170, 40)) as pilot:
            screen = JobsScreen("demo", tmp_path, poll_interval=0.05)
            await app.push_screen(screen)
            await until(pilot, lambda: screen.polls >= 1, "a first poll")
            status = screen.query_one(StatusLine)
            dash.faults["/api/jobs/"] = 503
            await until(pilot, lambda: "2 failed polls" in status.text, "two failures", 10)
            assert "Ray jobs: stale since" in status.text and "retry in 2 s" in status.text
            dash.faults.clear()
            screen.poll_now()
            await until(pilot, lambda: "Ray jobs: updated" in status.text, "recovery")
