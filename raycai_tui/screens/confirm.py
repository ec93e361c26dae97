"""A yes/no question about a destructive action; the safe answer has the focus.

Only the two buttons take the focus: `tab`/`shift+tab` and the arrow keys move between them
(the list of what is affected scrolls with the mouse or page up/down).
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses True only on an explicit yes (`y` or the danger button)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Do it"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Leave it as it is"),
        Binding(
            "tab,shift+tab,left,right,up,down",
            "switch",
            "Other button",
            id="confirm.switch",
            show=False,
            tooltip="Move between the two answers",
        ),
        Binding("pageup", "scroll_items(-1)", show=False, id="confirm.items_up"),
        Binding("pagedown", "scroll_items(1)", show=False, id="confirm.items_down"),
    ]

    def __init__(
        self, title: str, question: str, items: Sequence[str] = (), yes_label: str = "Delete"
    ) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.items = list(items)
        self.yes_label = yes_label
        self._answerable = False  # a yes counts once the question has been drawn

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.question, id="question", markup=False)
            if self.items:
                with VerticalScroll(id="items", can_focus=False):
                    for item in self.items:
                        yield Static(f"• {item}", classes="item", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="no", variant="primary")
                yield Button(self.yes_label, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        self.call_after_refresh(self._shown)

    def _shown(self) -> None:
        self._answerable = True
        self.refresh_bindings()

    @property
    def answerable(self) -> bool:
        """Whether a yes counts: the question has been drawn once."""
        return self._answerable

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`y` typed together with the key that opened this dialog (ctrl+d y) arrives before
        the question is on screen: a yes counts only once it has been shown."""
        return self._answerable or not (action == "answer" and parameters == (True,))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def action_switch(self) -> None:
        other = "#yes" if self.focused is not None and self.focused.id == "no" else "#no"
        self.query_one(other, Button).focus()

    def action_scroll_items(self, pages: int) -> None:
        for items in self.query("#items").results(VerticalScroll):
            if pages < 0:
                items.scroll_page_up()
            else:
                items.scroll_page_down()
