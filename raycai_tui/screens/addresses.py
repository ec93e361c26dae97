"""Where to reach a cluster: its head's CML URL, the Ray dashboard and the ray:// address."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


@dataclass(frozen=True)
class Addresses:
    app_url: str | None  # https://<head subdomain>.<workspace domain>, behind CML login
    dashboard_url: str | None  # http://<head pod ip>:<port>, inside the project's network
    client_address: str | None  # ray://<head pod ip>:<client port>
    gcs_address: str | None
    note: str | None = None  # why some are missing

    @property
    def lines(self) -> list[tuple[str, str | None]]:
        return [
            ("Head application (CML login)", self.app_url),
            ("Ray dashboard (project network)", self.dashboard_url),
            ("Ray client", self.client_address),
            ("Ray GCS (ray start --address)", self.gcs_address),
        ]


class AddressesScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,o,q", "close", "Close", id="addresses.close", tooltip="Back"),
        Binding(
            "c",
            "copy",
            "Copy ray://",
            id="addresses.copy",
            tooltip="Copy the ray:// address to the clipboard (OSC 52)",
        ),
    ]

    def __init__(self, cluster: str, addresses: Addresses) -> None:
        super().__init__()
        self.cluster = cluster
        self.addresses = addresses

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="addresses"):
            yield Label(f"Addresses of {self.cluster}", id="dialog-title")
            for label, value in self.addresses.lines:
                text = Text(f"{label}\n  ", style="bold")
                text.append(value or "-", style="" if value else "dim")
                yield Static(text, classes="address")
            if self.addresses.note:
                yield Static(Text(self.addresses.note, style="yellow"), classes="hint")
            yield Static(
                "Internal addresses work from sessions, jobs and applications of this project.",
                classes="hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self.addresses.client_address:
            self.app.copy_to_clipboard(self.addresses.client_address)
            self.notify(f"copied {self.addresses.client_address}")
