"""The keys of the screen below, with their binding ids (for a --keymap file)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label, Static


def binding_rows(screen: Screen[object]) -> list[tuple[str, str, str]]:
    """(keys, what it does, binding id) of every shown, enabled binding of `screen`."""
    rows: dict[str, tuple[list[str], str, str]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if not binding.show or not binding.description:
            continue
        display = screen.app.get_key_display(binding)
        ident = binding.id or ""
        name = ident or binding.action
        keys, _, _ = rows.setdefault(name, ([], binding.tooltip or binding.description, ident))
        if display not in keys:
            keys.append(display)
    return [(" ".join(keys), text, ident) for keys, text, ident in rows.values()]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Back"),
    ]

    def __init__(self, below: Screen[object], title: str) -> None:
        super().__init__()
        self.rows = binding_rows(below)
        self.title_text = title
        self.note: str = getattr(below, "help_note", "")  # what the keys act on, if it says

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="help"):
            yield Label(f"Keys: {self.title_text}", id="dialog-title")
            yield DataTable(id="keys", cursor_type="none", zebra_stripes=True)
            if self.note:
                yield Static(self.note, id="help-note", classes="hint", markup=False)
            yield Static(
                "Remap keys with raycai-tui --keymap FILE (TOML: binding id = key).",
                classes="hint",
            )

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("KEY", "ACTION", "BINDING ID")
        table.add_rows(self.rows)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
