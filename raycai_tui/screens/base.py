"""What every raycai screen shares: the app's services, read-only mode, worker errors."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from textual.timer import Timer

    from raycai_tui.app import RaycaiApp
    from raycai_tui.services import Services


class RaycaiScreen(Screen[None]):
    # Actions that change something; hidden (and their keys inert) in read-only mode.
    MUTATING: ClassVar[frozenset[str]] = frozenset()
    help_title = "raycai"  # what the help screen calls this screen

    @property
    def raycai(self) -> RaycaiApp:
        return cast("RaycaiApp", self.app)

    @property
    def services(self) -> Services | None:
        return self.raycai.services

    @property
    def is_current(self) -> bool:
        """False while another screen (a dialog, the logs) is on top: skip rendering work."""
        return self.app.screen is self

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.MUTATING and self.raycai.readonly)

    def connected_services(self) -> Services | None:
        """The services, or None after telling the user that the app is not connected."""
        if self.services is None:
            self.notify("Not connected to a workspace yet.", severity="warning")
        return self.services

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where a failed operation is shown (the app keeps running)."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                str(error), title=event.worker.name, severity="error", timeout=15, markup=False
            )


class PolledScreen(RaycaiScreen):
    """A screen fed by one poller of the Ray dashboard: a poll never overlaps the last one,
    the next is scheduled when an answer (or a failure) came back, with backoff, and the
    status line shows it. A subclass starts `poll()` as a worker and, on its message, calls
    `poll_succeeded()` or `poll_failed(reason)`."""

    SOURCE: ClassVar[str] = "Ray"  # the status line's name for what is polled
    STATUS_ID: ClassVar[str] = "status"  # the StatusLine's id on the screen

    def __init__(self, *, poll_interval: float | None = None) -> None:
        super().__init__()
        from raycai_tui.backoff import Backoff

        self.poll_interval = poll_interval
        self.backoff = Backoff(2.0, maximum=30.0)
        self.polls = 0
        self._timer: Timer | None = None
        self._polling = False

    def start_polling(self) -> None:
        self.backoff.interval = self.poll_interval or self.raycai.settings.poll_s or 2.0
        self._show_backoff()
        self.poll_now()

    def poll(self) -> object:
        raise NotImplementedError

    def poll_now(self) -> None:
        if self._polling:
            return
        if self._timer is not None:
            self._timer.stop()
        self._polling = True
        self.poll()

    def poll_succeeded(self) -> None:
        self._polling = False
        self.polls += 1
        self._schedule(self.backoff.succeeded(time.time()))

    def poll_failed(self, reason: str) -> None:
        self._polling = False
        self._schedule(self.backoff.failed(reason, time.time()))

    def stop_polling(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def _show_backoff(self) -> None:
        from raycai_tui.widgets.status_line import StatusLine

        self.query_one(f"#{self.STATUS_ID}", StatusLine).set_source(self.SOURCE, self.backoff)

    def _schedule(self, delay: float) -> None:
        self._show_backoff()
        self._timer = self.set_timer(delay, self.poll_now)
