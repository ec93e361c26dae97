"""Logs screen: follow one node's launcher log (project directory) or one of its Ray logs,
or every node's launcher log merged by time (each line prefixed by its node, in its color).

Sources run in workers (one group per source) and hand lines to a bounded `LineInbox`. The
screen takes everything waiting at most every `batch_interval` seconds and gives it to the
`LogView` in one call: one widget update per batch, however chatty the log is.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, OptionList, Static
from textual.worker import Worker, WorkerState, get_current_worker

from raycai_tui.screens.log_sources import (
    ALL_NODES,
    LAUNCHER,
    FollowSettings,
    LineInbox,
    Source,
    default_ray_file,
    follow_all_nodes,
    follow_file,
    follow_ray_log,
)
from raycai_tui.widgets.log_view import DEFAULT_MAX_LINES, LogView, Marker

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient


class LinesReady(Message, bubble=False):
    """A source's inbox went from empty to non-empty."""

    def __init__(self, inbox: LineInbox) -> None:
        super().__init__()
        self.inbox = inbox


class RayLogPicker(ModalScreen[str | None]):
    """Choose one of a node's Ray log files."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="logs.pick.cancel")]
    DEFAULT_CSS = """
    RayLogPicker { align: center middle; }
    RayLogPicker > OptionList { width: 60; max-height: 80%; border: round $accent; }
    """

    def __init__(self, files: list[str], current: str | None) -> None:
        super().__init__()
        self.files = files
        self._current = current

    def compose(self) -> ComposeResult:
        options = OptionList(*self.files)
        options.border_title = "Ray log file"
        if self._current in self.files:
            options.highlighted = self.files.index(self._current)
        yield options

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.files[event.option_index])


class LogsScreen(Screen[None]):
    """One node's logs (launcher or Ray), or all nodes' launcher logs: follow, wrap, filter,
    save."""

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
        Binding("t", "switch_source", "Source", id="logs.source", tooltip="Launcher log / Ray log"),
        # Screen binds tab first (focus), so a "t,tab" binding would show as "tab" in the footer.
        Binding("tab", "switch_source", "Source", id="logs.source.tab", show=False),
        Binding("p", "pick_ray_log", "Ray file", id="logs.pick", tooltip="Choose a Ray log file"),
        Binding(
            "a",
            "toggle_all_nodes",
            "All",
            id="logs.all",
            tooltip="Every node's launcher log merged by time / back to this node's",
        ),
        Binding(
            "ctrl+s,S", "save", "Save", id="logs.save", tooltip="Save the buffered lines to a file"
        ),
        Binding("escape", "back", "Back", id="logs.back"),
    ]

    DEFAULT_CSS = """
    LogsScreen {
        #logs-title { height: 1; background: $panel; color: $text; padding: 0 1; }
        #logs-view { height: 1fr; }
        #logs-filter { display: none; height: 3; }
        #logs-filter.-shown { display: block; }
        #logs-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    }
    """

    def __init__(
        self,
        *,
        cluster: str,
        node: str,
        launcher_log: Path,
        ray_client: RayClient | None,
        ray_node_id: str | None,
        max_lines: int = DEFAULT_MAX_LINES,
        settings: FollowSettings | None = None,
        batch_interval: float = 0.08,
        save_dir: Path | None = None,
        all_nodes: bool = False,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.node = node
        self.launcher_log = Path(launcher_log)
        self.ray_client = ray_client
        self.ray_node_id = ray_node_id
        self.max_lines = max_lines
        self.settings = settings or FollowSettings()
        self.batch_interval = batch_interval
        self.save_dir = save_dir or self.launcher_log.parent  # the cluster's logs directory
        self.logs_dir = self.launcher_log.parent  # every node's launcher log is there
        self.source: Source = ALL_NODES if all_nodes else LAUNCHER
        self.file_source = self.source  # where `t` goes back to from a Ray log
        self.ray_file: str | None = None  # chosen Ray log; None: raylet.out or the first
        self.error = ""
        self.last_saved: Path | None = None
        self.batches = 0  # view updates so far
        self._inbox = LineInbox(max_lines)
        self._flush_timer: Timer | None = None
        self._flush_due = False
        self._last_flush = 0.0
        self.view = LogView(max_lines=max_lines, id="logs-view")
        self.filter_input = Input(
            placeholder="filter: text or regex (enter keeps it, esc clears it)", id="logs-filter"
        )
        self.status = Static(id="logs-status")
        self.title_bar = Static(self._title(), id="logs-title")

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.title_bar
        yield self.view
        yield self.filter_input
        yield self.status
        yield Footer()

    def on_mount(self) -> None:
        view = self.view
        view.focus()
        for attribute in ("follow", "wrap", "only_matching"):
            self.watch(view, attribute, self._refresh_status, init=False)
        if self.source.kind == "all":
            self._open_all_nodes()
        else:
            self._open_launcher()

    def _title(self) -> Text:
        shown = "all nodes" if self.source.kind == "all" else self.node
        return Text(f"Logs · {self.cluster} / {shown}")

    # -- sources -----------------------------------------------------------------------------

    def _begin(self, source: Source) -> LineInbox:
        """Make `source` the shown one: stop the others, empty the view, new inbox."""
        for group in ("logs.launcher", "logs.all", "logs.ray"):
            if not (group == "logs.ray" and source.kind == "ray"):
                self.workers.cancel_group(self, group)
        self.source = source
        if source.kind != "ray":
            self.file_source = source
        self.title_bar.update(self._title())
        self._inbox = LineInbox(self.max_lines)
        if self._flush_timer is not None:
            self._flush_timer.stop()
        self._flush_due, self._flush_timer = False, None
        self.view.clear()
        self._refresh_status()
        return self._inbox

    def _open_launcher(self) -> None:
        self.error = ""
        inbox = self._begin(LAUNCHER)
        self._follow_launcher(inbox)

    @work(thread=True, exclusive=True, group="logs.launcher", exit_on_error=False)
    def _follow_launcher(self, inbox: LineInbox) -> None:
        worker = get_current_worker()
        follow_file(
            self.launcher_log,
            inbox,
            lambda: self.post_message(LinesReady(inbox)),
            worker.cancelled_event,
            self.settings,
        )

    def _open_all_nodes(self) -> None:
        self.error = ""
        inbox = self._begin(ALL_NODES)
        self._follow_all_nodes(inbox)

    def _open_file_source(self) -> None:
        """Back from a Ray log to the launcher log, or to all nodes' when that was shown."""
        if self.file_source.kind == "all":
            self._open_all_nodes()
        else:
            self._open_launcher()

    @work(thread=True, exclusive=True, group="logs.all", exit_on_error=False)
    def _follow_all_nodes(self, inbox: LineInbox) -> None:
        worker = get_current_worker()
        follow_all_nodes(
            self.logs_dir,
            inbox,
            lambda: self.post_message(LinesReady(inbox)),
            worker.cancelled_event,
            self.settings,
        )

    def ray_unavailable(self) -> str | None:
        """Why the Ray logs of this node cannot be shown, or None when they may be."""
        if self.ray_client is None:
            return (
                "Ray logs unavailable: the cluster's Ray dashboard cannot be reached "
                "(the head is not running, or not reachable from here)"
            )
        if self.ray_node_id is None:
            return f"Ray logs unavailable: {self.node} is not a Ray node (it has not joined Ray)"
        return None

    @work(exclusive=True, group="logs.ray", exit_on_error=False)
    async def _follow_ray(self, filename: str | None) -> None:
        """Switch to a Ray log file of the node (None: raylet.out), once the node answers."""
        from raycai_core.ray.errors import RayDashboardError

        client, node_id = self.ray_client, self.ray_node_id
        assert client is not None and node_id is not None
        try:
            # Asked every time: it tells a dead node or a gone head before the view changes.
            listing = await client.list_logs(node_id)
        except RayDashboardError as exc:
            self._report(f"Ray logs of {self.node} unavailable: {exc}")
            return
        if filename not in {name for names in listing.values() for name in names}:
            filename = default_ray_file(listing)
        if filename is None:
            self._report(f"Ray logs unavailable: {self.node} lists no Ray log files")
            return
        self.ray_file, self.error = filename, ""
        inbox = self._begin(Source("ray", filename))
        streaming = False

        def ready() -> None:
            nonlocal streaming
            streaming = True
            self._lines_ready(inbox)

        try:
            await follow_ray_log(client, node_id, filename, inbox, ready, self.settings)
        except RayDashboardError as exc:
            if inbox is not self._inbox:
                return
            if not streaming:  # nothing shown yet: back to the launcher log(s), and say why
                self._open_file_source()
                self._report(f"Ray log {filename} of {self.node} unavailable: {exc}")
                return
            inbox.put([Marker(f"… {filename} stopped: {exc} …")])
            self._lines_ready(inbox)
            self._report(f"Ray log {filename}: {exc} (t: back to the launcher log)")

    @work(exclusive=True, group="logs.ray-files", exit_on_error=False)
    async def _pick_ray_file(self) -> None:
        from raycai_core.ray.errors import RayDashboardError

        assert self.ray_client is not None and self.ray_node_id is not None
        try:
            listing = await self.ray_client.list_logs(self.ray_node_id)
        except RayDashboardError as exc:
            self._report(f"Ray logs of {self.node} unavailable: {exc}")
            return
        files = sorted({name for names in listing.values() for name in names})
        if not files:
            self._report(f"Ray logs unavailable: {self.node} lists no Ray log files")
            return
        current = self.ray_file or default_ray_file(listing)
        choice = await self.app.push_screen_wait(RayLogPicker(files, current))
        if choice:
            self._follow_ray(choice)

    # -- batching ----------------------------------------------------------------------------

    @on(LinesReady)
    def _on_lines_ready(self, message: LinesReady) -> None:
        self._lines_ready(message.inbox)

    def _lines_ready(self, inbox: LineInbox) -> None:
        if inbox is not self._inbox or self._flush_due:
            return  # an old source's lines, or a flush is already due
        self._flush_due = True
        delay = self._last_flush + self.batch_interval - time.monotonic()
        if delay <= 0:
            self.call_later(self._flush)
        else:
            self._flush_timer = self.set_timer(delay, self._flush)

    def _flush(self) -> None:
        self._flush_due, self._flush_timer = False, None
        self._last_flush = time.monotonic()
        lines = self._inbox.take()
        if lines:
            self.view.append(lines)
            self.batches += 1
            self._refresh_status()

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_source" and self.filter_input.has_focus:
            return False  # tab moves the focus while the filter is edited
        if action == "toggle_matching" and not self.view.filter_text:
            return None
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

    @on(Input.Changed, "#logs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.view.set_filter(event.value)
        self.refresh_bindings()
        self._refresh_status()

    @on(Input.Submitted, "#logs-filter")
    def _filter_done(self) -> None:
        self.filter_input.remove_class("-shown")
        self.view.focus()

    def action_back(self) -> None:
        if self.filter_input.has_focus:
            self.filter_input.value = ""  # esc while editing the filter clears it
            self._filter_done()
            return
        self.dismiss()

    def action_switch_source(self) -> None:
        if self.source.kind == "ray":
            self._open_file_source()
            return
        reason = self.ray_unavailable()
        if reason:
            self._report(reason)
            return
        self._follow_ray(self.ray_file)

    def action_toggle_all_nodes(self) -> None:
        if self.source.kind == "all":
            self._open_launcher()
        else:
            self._open_all_nodes()

    def action_pick_ray_log(self) -> None:
        reason = self.ray_unavailable()
        if reason:
            self._report(reason)
            return
        self._pick_ray_file()

    def action_save(self) -> None:
        self._save(self.view.lines())

    def _save_path(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.slug)
        owner = "" if self.source.kind == "all" else f"{self.node}-"
        stem = f"{owner}{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = self.save_dir / f"{stem}.txt", 1
        while path.exists():
            n += 1
            path = self.save_dir / f"{stem}-{n}.txt"
        return path

    @work(group="logs.save", exit_on_error=False)
    async def _save(self, lines: list[str]) -> None:
        from raycai_core.atomic import atomic_write_text

        def write() -> Path:  # off the UI thread: the project may be a network mount
            path = self._save_path()
            atomic_write_text(path, "".join(f"{line}\n" for line in lines))
            return path

        try:
            path = await asyncio.to_thread(write)
        except OSError as exc:
            self._report(f"Could not save the log to {self.save_dir}: {exc.strerror or exc}")
            return
        self.last_saved = path
        self.notify(f"Saved {len(lines):,} lines to {path}", title="Log saved")

    # -- status ------------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A source or save that failed unexpectedly: say so, keep the screen alive."""
        if event.state is WorkerState.ERROR:
            self._report(f"{event.worker.name} failed: {event.worker.error}")

    def _report(self, error: str) -> None:
        self.error = error
        self.notify(error, severity="warning", timeout=8)
        self._refresh_status()

    def _refresh_status(self, *_: object) -> None:
        if not self.is_mounted:
            return
        view = self.view
        parts = [
            (self.source.label, "bold"),
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
        for i, (part, style) in enumerate(parts):
            if i:
                text.append(" · ")
            text.append(part, style)
        self.status.update(text)
