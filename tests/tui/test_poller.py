"""The one Poller (raycai_tui/poller.py), on a bare Textual app: one poll at a time, the next
scheduled from the outcome (interval, or backoff after failures), poll-now and poll-soon
without overlap, pausing, and a failure to show an answer that does not stop the polling."""

from __future__ import annotations

import asyncio

from textual.app import App

from raycai_tui.backoff import Backoff
from raycai_tui.poller import Poller
from tests.tui.support import until


class Source:
    """What a poller fetches: answers counted, held at a gate, or failing on demand."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_with: str | None = None
        self.shown: list[int] = []
        self.statuses: list[tuple[bool, str | None]] = []

    async def fetch(self) -> int:
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail_with is not None:
                raise RuntimeError(self.fail_with)
            return self.started
        finally:
            self.in_flight -= 1

    def show(self, answer: int) -> None:
        self.shown.append(answer)

    def status(self, backoff: Backoff) -> None:
        self.statuses.append((backoff.stale, backoff.reason))


def poller_of(app: App[None], source: Source, interval: float, **options) -> Poller[int]:
    return Poller(
        app,
        source.fetch,
        source.show,
        name="test poll",
        group="test-poll",
        interval=interval,
        on_status=source.status,
        **options,
    )


async def test_one_poll_at_a_time_and_a_poll_asked_meanwhile_runs_right_after() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()
        poller = poller_of(app, source, interval=60.0)  # only asked-for polls in this test
        source.gate.clear()
        poller.start()
        await until(pilot, lambda: source.started == 1, "the first poll to start")
        for _ in range(5):  # a refresh key hammered while the answer is slow
            poller.poll_now()
            poller.poll_soon()
        await pilot.pause(0.3)
        assert source.started == 1 and poller.running
        source.gate.set()
        await until(pilot, lambda: poller.polls == 2, "one more poll, right after the first")
        await pilot.pause(0.3)
        assert source.started == 2 and source.most_in_flight == 1
        assert source.shown == [1, 2]
        assert poller.due_in is not None and poller.due_in > 30  # back to the interval


async def test_failures_back_off_and_a_success_resets_to_the_interval() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()
        source.fail_with = "HTTP 503"
        poller = poller_of(app, source, interval=0.05, maximum=30.0)
        poller.start()
        await until(pilot, lambda: poller.failures == 1, "a failed poll")
        backoff = poller.backoff
        assert backoff.stale and backoff.reason == "HTTP 503" and source.shown == []
        assert source.statuses[-1] == (True, "HTTP 503")  # the status line is told
        first_wait = poller.due_in
        assert first_wait is not None and first_wait > 0.5  # not the 0.05 s interval
        poller.poll_now()  # e.g. the refresh key: fails again, waits longer
        await until(pilot, lambda: poller.failures == 2, "a second failed poll")
        assert poller.due_in is not None and poller.due_in > first_wait
        assert backoff.failing_since is not None and backoff.failures == 2

        source.fail_with = None
        poller.poll_now()
        # At a 0.05 s interval a second good poll may come before this looks: at least one.
        await until(pilot, lambda: poller.polls >= 1, "a good poll")
        assert not backoff.stale and backoff.updated_at is not None
        assert source.statuses[-1] == (False, None)
        await until(pilot, lambda: poller.polls >= 3, "polls at the interval again")


async def test_poll_soon_never_postpones_a_poll_already_due_sooner() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()
        poller = poller_of(app, source, interval=60.0)
        poller.start()
        await until(pilot, lambda: poller.polls == 1, "the first poll")
        poller.poll_soon(0.05)
        poller.poll_soon(30.0)  # a later "soon" does not push the first one back
        await until(pilot, lambda: poller.polls == 2, "the soon poll")
        poller.stop()
        poller.poll_soon(0.01)
        poller.poll_now()
        await pilot.pause(0.2)
        assert poller.polls == 2 and poller.due_in is None  # stopped: nothing more


async def test_a_paused_poller_waits_until_resumed() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()
        hidden = False
        poller = poller_of(app, source, interval=0.05, paused=lambda: hidden)
        poller.start()
        await until(pilot, lambda: poller.polls >= 2, "polls while shown")
        hidden = True
        await until(pilot, lambda: poller.waiting, "a poll falling due while hidden")
        started = source.started
        await pilot.pause(0.3)
        assert source.started == started  # nothing fetched while hidden
        hidden = False
        poller.resume()
        await until(pilot, lambda: source.started > started, "the poll after resuming")
        await until(pilot, lambda: poller.polls >= started + 2, "polling again")


async def test_a_failure_to_show_an_answer_is_said_and_polling_goes_on() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()

        def broken_show(answer: int) -> None:
            raise KeyError("column")

        poller = Poller(
            app,
            source.fetch,
            broken_show,
            name="test poll",
            group="test-poll",
            interval=0.05,
            on_status=source.status,
        )
        poller.start()
        await until(pilot, lambda: poller.failures >= 1, "the failure")
        assert poller.backoff.reason == "could not show the answer: 'column'"
        assert poller.active and poller.due_in is not None  # the next poll is scheduled
        assert app.is_running


async def test_check_calls_an_answer_a_failure_and_it_is_still_shown() -> None:
    """The cluster screen's case: Ray's silence is a failure, the view is still shown."""
    app: App[None] = App()
    async with app.run_test() as pilot:
        source = Source()
        poller = poller_of(
            app,
            source,
            interval=60.0,
            check=lambda answer: "Ray does not answer" if answer == 1 else None,
        )
        poller.start()
        await until(pilot, lambda: poller.failures == 1, "the answer judged a failure")
        assert source.shown == [1] and poller.backoff.stale and poller.polls == 0
        poller.poll_now()
        await until(pilot, lambda: poller.polls == 1, "a good answer")
        assert source.shown == [1, 2] and not poller.backoff.stale
