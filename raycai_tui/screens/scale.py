"""Ask how to scale a cluster: a number of workers (`3`) or a change (`+2`, `-1`).

Prefilled with the stored count last seen; a change is applied by the core to the stored count
at the time it runs, so it stays right even if the count moved meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ScaleTarget


def parse_target(raw: str) -> tuple[ScaleTarget | None, str | None]:
    """(the target, None) or (None, why `raw` is not one)."""
    from raycai_core.cluster.lifecycle import ScaleTarget
    from raycai_core.spec import field_problem

    try:
        target = ScaleTarget.parse(raw)
    except ValueError as exc:
        return None, str(exc)
    if target.count is not None:
        problem = field_problem("workers.count", str(target.count))
        if problem:
            return None, problem
    return target, None


class ScaleScreen(ModalScreen["ScaleTarget | None"]):
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
            yield Static(
                f"Workers now: {self.current}. New number of workers, or a change (+2, -1):"
            )
            yield Input(str(self.current), id="count", select_on_focus=True)
            yield Static("", id="count-problem", classes="problem", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Scale", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#count", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        _, problem = parse_target(event.value)
        self.query_one("#count-problem", Static).update(problem or "")

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
        target, problem = parse_target(self.query_one("#count", Input).value)
        if target is None:
            self.query_one("#count-problem", Static).update(problem or "")
            return
        self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)
