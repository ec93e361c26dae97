"""One log pane for every log screen: the view, its filter field and its status line, with
the same keys wherever it is used (the node logs screen, a job's logs).

Keys (binding ids `logs.*`, remappable in the user keymap): `f` follow, `w` wrap, `/` filter
(a regex or text; enter keeps it, esc clears it), `m` only the matching lines, `ctrl+s`/`S`
save the buffered lines. Merged logs (lines that start with their node's name, `Prefixed`)
show the name in the node's color. The owner feeds lines (`append`), names the source
(`set_label`), reports errors (`report`) and says where a save goes (`save_path`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from raycai_tui.widgets.log_view import DEFAULT_MAX_LINES, LogView


class LogPane(Vertical):
    """A LogView with follow, wrap, filter, matching-only and save, and its status line."""

    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="logs.follow", tooltip="Follow new lines"),
        Binding("w", "toggle_wrap", "Wrap", id="logs.wrap", tooltip="Wrap long lines"),
        Binding("slash", "filter", "Filter", id="logs.filter", tooltip="Highlight a regex"),
        Binding(
            "m",
            "toggle_matching",
            "Matches",
            id="logs.matching",
            tooltip="Show only the lines that match the filter",
        ),
        Binding(
            "ctrl+s,S", "save", "Save", id="logs.save", tooltip="Save the buffered lines to a file"
        ),
        # Only while the filter is edited (else the screen's escape: back).
        Binding("escape", "close_filter", "Clear filter", id="logs.filter.clear", show=False),
    ]
    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
        & > LogView { height: 1fr; }
        & > .log-pane--filter { display: none; height: 3; }
        & > .log-pane--filter.-shown { display: block; }
        & > .log-pane--status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    }
    """

    def __init__(
        self,
        *,
        save_path: Callable[[], Path],
        label: str = "",
        max_lines: int = DEFAULT_MAX_LINES,
        filter_placeholder: str = "filter: text or regex (enter keeps it, esc clears it)",
        id: str | None = None,
        view_id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.save_path = save_path
        self.label = label
        self.error = ""
        self.last_saved: Path | None = None
        self.view = LogView(max_lines=max_lines, id=view_id)
        self.filter_input = Input(placeholder=filter_placeholder, classes="log-pane--filter")
        self.status = Static(classes="log-pane--status")

    def compose(self) -> ComposeResult:
        yield self.view
        yield self.filter_input
        yield self.status

    def on_mount(self) -> None:
        for attribute in ("follow", "wrap", "only_matching"):
            self.watch(self.view, attribute, self.refresh_status, init=False)
        self.refresh_status()

    # -- what the owner calls ----------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        self.view.append(lines)
        self.refresh_status()

    def clear(self) -> None:
        self.view.clear()
        self.refresh_status()

    def set_label(self, label: str) -> None:
        self.label = label
        self.refresh_status()

    def report(self, error: str, *, notify: bool = True) -> None:
        """Show `error` in the status line (and as a notification) until the next one."""
        self.error = error
        if notify:
            self.notify(error, severity="warning", timeout=8, markup=False)
        self.refresh_status()

    def clear_error(self) -> None:
        if self.error:
            self.error = ""
            self.refresh_status()

    # -- keys --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_matching" and not self.view.filter_text:
            return None
        if action == "close_filter":
            return self.filter_input.has_focus
        return True

    def action_toggle_follow(self) -> None:
        self.view.follow = not self.view.follow

    def action_toggle_wrap(self) -> None:
        self.view.wrap = not self.view.wrap

    def action_toggle_matching(self) -> None:
        self.view.only_matching = not self.view.only_matching

    def action_filter(self) -> None:
        field = self.filter_input
        field.add_class("-shown")
        field.value = self.view.filter_text
        field.focus()

    def action_close_filter(self) -> None:
        self.filter_input.value = ""  # esc while editing the filter clears it
        self._filter_done()

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.view.set_filter(event.value)
        self.screen.refresh_bindings()
        self.refresh_status()

    @on(Input.Submitted)
    def _filter_done(self) -> None:
        self.filter_input.remove_class("-shown")
        self.view.focus()

    def action_save(self) -> None:
        self._save(self.view.lines())

    @work(group="logs.save", exit_on_error=False)
    async def _save(self, lines: list[str]) -> None:
        from raycai_core.atomic import atomic_write_text

        def write() -> Path:  # off the UI thread: the project may be a network mount
            path = self.save_path()
            atomic_write_text(path, "".join(f"{line}\n" for line in lines))
            return path

        try:
            path = await asyncio.to_thread(write)
        except OSError as exc:
            where = exc.filename or "its folder"
            self.report(f"Could not save the log to {where}: {exc.strerror or exc}")
            return
        self.last_saved = path
        self.notify(f"Saved {len(lines):,} lines to {path}", title="Log saved", markup=False)

    # -- status ------------------------------------------------------------------------------

    def refresh_status(self, *_: object) -> None:
        if not self.is_mounted:
            return
        view = self.view
        parts = [
            (self.label, "bold"),
            (f"{view.line_count:,}/{view.max_lines:,} lines", ""),
            ("follow on" if view.follow else "follow off (paused)", ""),
            (f"wrap {'on' if view.wrap else 'off'}", ""),
        ]
        if view.filter_text:
            only = ", only these" if view.only_matching else ""
            parts.append((f"filter {view.filter_text!r}: {view.match_count:,} matches{only}", ""))
        if view.skipped_total:
            parts.append((f"{view.skipped_total:,} skipped", "yellow"))
        if self.error:
            parts.append((self.error, "bold red"))
        text = Text()
        for part, style in (p for p in parts if p[0]):
            if text:
                text.append(" · ")
            text.append(part, style)
        self.status.update(text)
