"""One line saying how fresh the data is: updated at, or stale since when and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from raycai_tui.format import clock, number, one_line
from raycai_tui.widgets.text_line import show_text

if TYPE_CHECKING:
    from raycai_tui.backoff import Backoff


def source_text(label: str, backoff: Backoff | None) -> Text:
    text = Text()
    if backoff is None or (backoff.updated_at is None and not backoff.stale):
        text.append(f"{label}: waiting for the first poll", style="dim")
    elif backoff.stale:
        since = backoff.failing_since or 0.0
        polls = f"{backoff.failures} failed poll{'s' if backoff.failures > 1 else ''}"
        retry = f", retry in {number(round(backoff.next_in, 1))} s" if backoff.next_in else ""
        text.append(f"{label}: stale since {clock(since)}", style="bold red")
        text.append(f" ({polls}{retry}): ")
        text.append(one_line(backoff.reason or "unknown error", 180), style="red")
    else:
        assert backoff.updated_at is not None
        text.append(f"{label}: updated {clock(backoff.updated_at)}", style="dim")
    return text


class StatusLine(Static):
    """`set_source` per data source (CML, Ray); `set_note` for the modes (healing, read-only)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._sources: dict[str, Backoff | None] = {}
        self._message: Text | None = None
        self._notes: list[str] = []

    @property
    def text(self) -> str:
        return self._compose_text().plain

    def set_source(self, label: str, backoff: Backoff | None, *, show: bool = True) -> None:
        """`show=False`: kept for the next change shown (saves a repaint when another
        source's update follows at once)."""
        self._sources[label] = backoff
        if show:
            self._refresh()

    def drop_source(self, label: str) -> None:
        """No longer report `label` (until its next `set_source`)."""
        if label in self._sources:
            del self._sources[label]
            self._refresh()

    def set_message(self, message: str | None, style: str = "bold red") -> None:
        """A message that replaces the sources, e.g. why the app could not connect."""
        self._message = Text(message, style=style) if message else None
        self._refresh()

    def set_notes(self, *notes: str) -> None:
        kept = [note for note in notes if note]
        if kept != self._notes:  # asked every poll: no repaint when nothing changed
            self._notes = kept
            self._refresh()

    def _compose_text(self) -> Text:
        if self._message is not None:
            parts = [self._message]
        else:
            parts = [source_text(label, b) for label, b in self._sources.items()]
        parts += [Text(note, style="dim italic") for note in self._notes]
        return Text(" | ").join(parts)

    def _refresh(self) -> None:
        show_text(self, self._compose_text())
        self.set_class(any(b is not None and b.stale for b in self._sources.values()), "-stale")
