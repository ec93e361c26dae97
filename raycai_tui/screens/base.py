"""What every raycai screen shares: the app's services, read-only mode, worker errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from raycai_tui.poller import Poller

if TYPE_CHECKING:
    from raycai_tui.app import RaycaiApp
    from raycai_tui.backoff import Backoff
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
    """A screen fed by one Poller of the Ray dashboard (raycai_tui.poller): a subclass says
    what to `fetch()` and how to `show()` the answer; the poller runs one poll at a time,
    backs off while it fails (the status line says since when), and pauses while another
    screen covers this one."""

    SOURCE: ClassVar[str] = "Ray"  # the status line's name for what is polled
    STATUS_ID: ClassVar[str] = "status"  # the StatusLine's id on the screen
    POLL_GROUP: ClassVar[str] = "poll"  # the poller's worker group

    def __init__(self, *, poll_interval: float | None = None) -> None:
        super().__init__()
        self.poll_interval = poll_interval
        self.poller: Poller[Any] | None = None

    @property
    def polls(self) -> int:
        return self.poller.polls if self.poller is not None else 0

    def start_polling(self) -> None:
        self.poller = Poller(
            self,
            self.fetch,
            self.show,
            name=f"poll {self.SOURCE}",
            group=self.POLL_GROUP,
            interval=self.poll_interval or self.raycai.settings.poll_s or 2.0,
            on_status=self._show_status,
            paused=lambda: not self.is_current,
        )
        self.poller.start()

    async def fetch(self) -> Any:
        raise NotImplementedError

    def show(self, answer: Any) -> None:
        raise NotImplementedError

    def poll_now(self) -> None:
        if self.poller is not None:
            self.poller.poll_now()

    def stop_polling(self) -> None:
        if self.poller is not None:
            self.poller.stop()

    def on_screen_resume(self) -> None:
        if self.poller is not None:
            self.poller.resume()

    def _show_status(self, backoff: Backoff) -> None:
        from raycai_tui.widgets.status_line import StatusLine

        self.query_one(f"#{self.STATUS_ID}", StatusLine).set_source(self.SOURCE, backoff)
