"""Where to reach a cluster: its head's CML URL, the Ray dashboard and the ray:// address."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
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
    token_path: Path | None = None  # the cluster's Ray token file (read only to copy it)

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
        Binding(
            "t",
            "copy_token",
            "Copy token",
            id="addresses.copy_token",
            tooltip="Copy the cluster's Ray token to the clipboard (OSC 52), after asking",
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
                "Internal addresses work from sessions, jobs and applications of this project. "
                f"`raycai env {self.cluster}` prints what a driver needs; the dashboard in a "
                "browser asks for the cluster's token (t copies it).",
                classes="hint",
                markup=False,
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self.addresses.client_address:
            self.app.copy_to_clipboard(self.addresses.client_address)
            self.notify(f"copied {self.addresses.client_address}")

    def action_copy_token(self) -> None:
        from raycai_tui.screens.confirm import ConfirmScreen

        if self.addresses.token_path is None:
            self.notify("This cluster has no token file.", severity="warning")
            return
        question = (
            "Copy the Ray token of this cluster to your clipboard? Whoever holds it can run "
            "code on every node. Paste it only into the Ray dashboard's login."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.copy_token()

        self.app.push_screen(
            ConfirmScreen(f"Copy the token of {self.cluster}", question, yes_label="Copy"),
            answered,
        )

    @work(group="copy-token", exclusive=True, exit_on_error=False)
    async def copy_token(self) -> None:
        path = self.addresses.token_path
        assert path is not None
        try:  # the project may be a network mount: read it off the event loop
            token = (await asyncio.to_thread(path.read_text, encoding="utf-8")).strip()
        except OSError as exc:
            self.notify(f"Cannot read the token file: {exc.strerror}", severity="error")
            return
        if not token:
            self.notify("The token file is empty.", severity="error")
            return
        self.app.copy_to_clipboard(token)  # OSC 52; the token is never shown
        self.notify("Token copied to the clipboard (not shown).")
