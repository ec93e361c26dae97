"""What every raycai screen shares: the app's services, read-only mode, worker errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
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
