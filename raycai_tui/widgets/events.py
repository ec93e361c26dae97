"""The events of one cluster (operations, healing, failures), newest at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from raycai_tui.format import clock
from raycai_tui.messages import Event

LEVEL_STYLES = {"info": "", "warning": "yellow", "error": "bold red"}


class EventsLog(RichLog):
    def __init__(self, *, id: str | None = None, max_lines: int = 500) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=True, markup=False)
        self.auto_scroll = True  # the newest event is what matters
        self.border_title = "Events"
        self.texts: list[str] = []

    def add(self, event: Event) -> None:
        self.texts.append(event.text)
        line = Text(f"{clock(event.at)} ", style="dim")
        line.append(event.text, style=LEVEL_STYLES.get(event.level, ""))
        self.write(line)
