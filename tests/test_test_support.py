"""The suite's own support: waits scaled by patience, the wait for a screen, and the
stuck-task report."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.app import App, ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static

from tests.fixtures.patience import Deadline, patience
from tests.fixtures.stuck_tasks import dump_pending_tasks
from tests.tui.support import until_screen


def test_patience_scales_waits_and_refuses_a_bad_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYCAI_TEST_PATIENCE", raising=False)
    assert patience(20) == 20
    monkeypatch.setenv("RAYCAI_TEST_PATIENCE", "3")
    assert patience(20) == 60
    for bad in ("0.5", "three"):
        monkeypatch.setenv("RAYCAI_TEST_PATIENCE", bad)
        with pytest.raises(ValueError, match="RAYCAI_TEST_PATIENCE"):
            patience(20)


def test_a_deadline_is_not_spent_by_a_look_that_came_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A look that comes late (the process was starved, here a long sleep) charges at most four
    looks' time; looks on time are charged as the clock says."""
    monkeypatch.delenv("RAYCAI_TEST_PATIENCE", raising=False)
    deadline = Deadline(0.5, every=0.05)
    time.sleep(1.0)
    assert not deadline.passed()  # 1 s of wall time, 0.2 s charged
    started = time.monotonic()
    looks = 0
    while not deadline.passed():
        time.sleep(0.05)
        looks += 1
    assert time.monotonic() - started >= 0.3
    assert looks <= 7  # 0.3 s more, in looks of at least 0.05 s


async def test_a_stuck_task_is_reported_down_to_the_await_that_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    never = asyncio.Event()

    async def waits_for_the_event() -> None:
        await never.wait()

    async def outer() -> None:
        await waits_for_the_event()

    task = asyncio.create_task(outer(), name="the stuck one")
    await asyncio.sleep(0)
    try:
        dump_pending_tasks("a test")
    finally:
        task.cancel()
    report = capsys.readouterr().err
    assert "a test:" in report and "the stuck one:" in report
    lines = report.splitlines()
    start = lines.index("the stuck one:")
    chain = lines[start + 1 : start + 4]
    assert [line.rsplit(" in ", 1)[1] for line in chain] == ["outer", "waits_for_the_event", "wait"]


class Pushed(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static("here", id="child")


async def test_until_screen_waits_for_the_screen_to_be_composed_not_only_pushed() -> None:
    """`app.screen` is a pushed screen at once, before its children exist: a test that waited
    for `isinstance(app.screen, ...)` and then queried it failed when starved (ci32)."""
    app: App[None] = App()
    async with app.run_test() as pilot:
        app.push_screen(Pushed())  # not awaited, as when a message handler switches screens
        assert isinstance(app.screen, Pushed) and not app.screen.is_mounted
        with pytest.raises(NoMatches):
            app.screen.query_one("#child")
        screen = await until_screen(pilot, Pushed, "the pushed screen")
        assert screen.query_one("#child", Static).is_mounted
