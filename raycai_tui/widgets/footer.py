"""Textual's Footer, rebuilt only when the keys it shows changed.

Textual's Footer recomposes (mounts a widget per key, restyles them, lays the screen out
again) on every `refresh_bindings()`, whether or not any key changed. A screen that refreshes
its bindings on each poll (keys that wait for data) then spends most of its idle CPU there.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    _shown: tuple[object, ...] | None = None  # what the last compose showed

    def shown_keys(self) -> tuple[object, ...]:
        """Everything the footer's compose reads: a change of any of it redraws the keys."""
        app = self.app
        keys = tuple(
            (binding, enabled, tooltip, app.get_key_display(binding))
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
        )
        return keys, self.show_command_palette, self.compact, app.ENABLE_COMMAND_PALETTE

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self.shown_keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if (
            self._shown is not None
            and screen is self.screen
            and self.is_attached
            and self.shown_keys() == self._shown
        ):
            return
        super().bindings_changed(screen)
