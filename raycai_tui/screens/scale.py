"""Ask for a cluster's number of workers, prefilled with the current count."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


def count_problem(raw: str) -> str | None:
    from raycai_core.spec import field_problem

    return field_problem("workers.count", raw)


class ScaleScreen(ModalScreen[int | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="scale.cancel", tooltip="Keep the count"),
    ]

    def __init__(self, cluster: str, current: int) -> None:
        super().__init__()
        self.cluster = cluster
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="scale"):
            yield Label(f"Scale {self.cluster}", id="dialog-title")
            yield Static(f"Workers now: {self.current}. New number of workers:")
            yield Input(str(self.current), id="count", select_on_focus=True)
            yield Static("", id="count-problem", classes="problem", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Scale", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#count", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#count-problem", Static).update(count_problem(event.value) or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def _apply(self) -> None:
        raw = self.query_one("#count", Input).value
        problem = count_problem(raw)
        if problem:
            self.query_one("#count-problem", Static).update(problem)
            return
        self.dismiss(int(float(raw)))

    def action_cancel(self) -> None:
        self.dismiss(None)
