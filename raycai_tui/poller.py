"""The one poller of raycai-tui: the app's cluster list, the cluster screen's Ray poll and the
Jobs/Serve screens all run through it (as dolphie's pollers do).

- One poll at a time: it runs as a worker of its owner (the App or a Screen) in its own group,
  and the next one is scheduled only once the answer or the failure came back.
- The delay comes from `Backoff`: the interval after a success, longer after each failure in
  a row; `on_status` hands the backoff to the status line (updated at, or stale since when).
- `poll_now()` / `poll_soon()` (after an operation, a submit) never overlap a running poll:
  they make it run again right after the one in flight.
- `paused` (e.g. "my screen is not current"): a poll that falls due meanwhile waits for
  `resume()`, so a covered screen does no work and catches up once shown again.
- `follows`: the owner calls `poll_now()` on each tick of another poller (the cluster screen's
  Ray poll follows the app's list, so both answers are shown in one repaint); its own timer
  is then a fallback, FOLLOW_SLACK intervals after a success, for when those ticks stop.
- Any failure, of the fetch or of showing its answer, is shown and retried, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from raycai_tui.backoff import Backoff
from raycai_tui.format import describe_error

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.timer import Timer

T = TypeVar("T")
SOON_S = 0.1  # "poll soon": after an operation ended, a submit, a refresh key
FOLLOW_SLACK = 1.5


class Poller(Generic[T]):
    """`fetch()` gets an answer; `check(answer)` may call it a failure (returns why);
    `apply(answer)` shows it (after a failure too, when `check` said so: the answer is all
    there is). The poller owns nothing else: what it fetches and shows is its owner's."""

    def __init__(
        self,
        owner: DOMNode,
        fetch: Callable[[], Awaitable[T]],
        apply: Callable[[T], None],
        *,
        name: str,
        group: str,
        interval: float,
        maximum: float = 30.0,
        check: Callable[[T], str | None] | None = None,
        on_status: Callable[[Backoff], None] | None = None,
        paused: Callable[[], bool] | None = None,
        follows: bool = False,
    ) -> None:
        self.owner = owner
        self.name = name
        self.group = group  # exclusive=True cancels only within a group: one per poller
        self.backoff = Backoff(interval, maximum=maximum)
        self.polls = 0  # answers accepted
        self.failures = 0  # polls that failed, in all
        self._fetch = fetch
        self._apply = apply
        self._check = check
        self._on_status = on_status
        self._paused = paused
        self._follows = follows
        self._active = False
        self._running = False
        self._again = False  # asked to poll while one ran: once more right after it
        self._pending = False  # fell due while paused
        self._timer: Timer | None = None
        self._due_at: float | None = None  # monotonic time of the timer

    # -- state --------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._active

    @property
    def running(self) -> bool:
        """A poll is in flight."""
        return self._running

    @property
    def waiting(self) -> bool:
        """A poll fell due while paused and waits for `resume()`."""
        return self._pending

    @property
    def due_in(self) -> float | None:
        """Seconds until the next scheduled poll (None: none scheduled)."""
        if self._due_at is None:
            return None
        return max(0.0, self._due_at - time.monotonic())

    # -- control ------------------------------------------------------------------------

    def start(self) -> None:
        """Poll now, then keep polling until `stop()`."""
        self._active = True
        self._show_status()
        self.poll_now()

    def stop(self) -> None:
        """No more polls (one in flight finishes, and is shown)."""
        self._active = False
        self._pending = False
        self._cancel_timer()

    def poll_now(self) -> None:
        """Poll at once; while one runs, once more right after it (never two at a time)."""
        if not self._active:
            return
        if self._running:
            self._again = True
            return
        self._cancel_timer()
        if self._paused is not None and self._paused():
            self._pending = True
            return
        self._pending = False
        self._running = True
        self.owner.run_worker(
            self._run(), name=self.name, group=self.group, exclusive=True, exit_on_error=False
        )

    def poll_soon(self, delay: float = SOON_S) -> None:
        """Poll within `delay` seconds (sooner if already due sooner), without overlapping."""
        if not self._active:
            return
        if self._running:
            self._again = True
            return
        due_in = self.due_in
        if due_in is None or due_in > delay:
            self._schedule(delay)

    def resume(self) -> None:
        """The owner is shown again: run the poll that fell due while paused."""
        if self._pending:
            self.poll_now()

    # -- one poll -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            answer = await self._fetch()
            reason = self._check(answer) if self._check is not None else None
        except asyncio.CancelledError:
            self._running = False  # the owner went away
            raise
        except Exception as exc:  # any failure is shown and retried, never fatal
            self._finished(describe_error(exc), None, answered=False)
            return
        self._finished(reason, answer, answered=True)

    def _finished(self, reason: str | None, answer: T | None, *, answered: bool) -> None:
        now = time.time()
        if reason is None:
            self.polls += 1
            delay = self.backoff.succeeded(now) * (FOLLOW_SLACK if self._follows else 1.0)
        else:
            self.failures += 1
            delay = self.backoff.failed(reason, now)
        if answered:
            try:
                self._apply(answer)  # type: ignore[arg-type]
            except Exception as exc:  # a bug in showing the answer: said, polling goes on
                self.failures += 1
                reason = f"could not show the answer: {describe_error(exc)}"
                delay = self.backoff.failed(reason, now)
        self._running = False  # after showing: a poll asked for meanwhile runs next
        self._show_status()
        if self._again:
            self._again = False
            delay = min(delay, SOON_S)
        if self._active:
            self._schedule(delay)

    # -- timer --------------------------------------------------------------------------

    def _show_status(self) -> None:
        if self._on_status is not None:
            self._on_status(self.backoff)

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        self._due_at = time.monotonic() + delay
        self._timer = self.owner.set_timer(delay, self._due, name=f"{self.name} timer")

    def _due(self) -> None:
        self._timer = None
        self._due_at = None
        self.poll_now()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._due_at = None
