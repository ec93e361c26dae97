"""Textual's Header, minus a crash: its title watcher runs when the app's sub-title changes
(raycai-tui sets it once connected), and on a screen being composed or dismissed at that
moment the title widget is not there yet or any more (NoMatches), which Textual 8 does not
catch and which would end the app."""

from __future__ import annotations

import contextlib

from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.events import Mount
from textual.widgets import Header
from textual.widgets._header import HeaderTitle


class RaycaiHeader(Header):
    def _on_mount(self, event: Mount) -> None:
        event.prevent_default()  # Header's own handler would watch with the uncaught query

        async def set_title() -> None:
            # Composing or going away: the next change, or the compose, shows the title.
            with contextlib.suppress(NoScreen, NoMatches):
                self.query_one(HeaderTitle).update(self.format_title())

        self.watch(self.app, "title", set_title)
        self.watch(self.app, "sub_title", set_title)
        self.watch(self.screen, "title", set_title)
        self.watch(self.screen, "sub_title", set_title)
