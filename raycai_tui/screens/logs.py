"""Logs screen: follow one node's launcher log (project directory) or one of its Ray logs,
or every node's launcher log merged by time (each line prefixed by its node, in its color).

A node's Ray logs come from Ray's dashboard while the node is in Ray; once it is gone (or Ray
does not answer), from the copy its launcher kept in the project (`logs/<node>/ray/`),
marked "(node gone since T)". With all nodes merged, `p` merges in each node's copy of one
Ray log file. Follow, wrap, filter, matching-only and save are the LogPane's (the same keys
as a job's logs).

Sources run in workers (one group per source) and hand lines to a bounded `LineInbox`. The
screen takes everything waiting at most every `batch_interval` seconds and gives it to the
`LogView` in one call: one widget update per batch, however chatty the log is.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
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
from raycai_tui.widgets.log_pane import LogPane
from raycai_tui.widgets.log_view import DEFAULT_MAX_LINES, LogView, Marker

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient
    from raycai_core.ray_log_copies import RayLogCopy


NOT_IN_RAY = "(not in Ray)"  # the node picker's label of a node gone, or not joined


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

    def __init__(self, files: list[str], current: str | None, title: str = "Ray log file") -> None:
        super().__init__()
        self.files = files
        self._current = current
        self._title = title

    def compose(self) -> ComposeResult:
        options = OptionList(*self.files)
        options.border_title = self._title
        if self._current in self.files:
            options.highlighted = self.files.index(self._current)
        yield options

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.files[event.option_index])


class LogsScreen(Screen[None]):
    """One node's logs (launcher or Ray), or all nodes' launcher logs: follow, wrap, filter,
    save (the LogPane's keys)."""

    BINDINGS = [
        Binding("t", "switch_source", "Source", id="logs.source", tooltip="Launcher log / Ray log"),
        # Screen binds tab first (focus), so a "t,tab" binding would show as "tab" in the footer.
        Binding("tab", "switch_source", "Source", id="logs.source.tab", show=False),
        Binding(
            "p",
            "pick_ray_log",
            "Ray file",
            id="logs.pick",
            tooltip="Choose a Ray log file (all nodes: merge each node's copy of one)",
        ),
        Binding(
            "a",
            "toggle_all_nodes",
            "All",
            id="logs.all",
            tooltip="Every node's launcher log merged by time / back to this node's",
        ),
        Binding(
            "n",
            "pick_node",
            "Node",
            id="logs.node",
            tooltip="Another node's logs, gone nodes' included",
            show=False,  # the footer is full at 100 columns; `?` lists it
        ),
        Binding("escape", "back", "Back", id="logs.back"),
    ]

    DEFAULT_CSS = """
    LogsScreen {
        #logs-title { height: 1; background: $panel; color: $text; padding: 0 1; }
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
        ray_nodes: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.node = node
        # The cluster's nodes alive in Ray when the screen opened: node -> Ray node id (`n`).
        self.ray_nodes = dict(ray_nodes or {})
        if ray_node_id is not None:
            self.ray_nodes.setdefault(node, ray_node_id)
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
        self.merged_ray_file: str | None = None  # with all nodes: each node's copy merged in
        self.batches = 0  # view updates so far
        self._inbox = LineInbox(max_lines)
        self._flush_timer: Timer | None = None
        self._flush_due = False
        self._last_flush = 0.0
        self.pane = LogPane(
            save_path=self._save_path,
            label=self.source.label,
            max_lines=max_lines,
            id="logs-pane",
            view_id="logs-view",
        )
        self.title_bar = Static(self._title(), id="logs-title")

    # The pane's parts, by the names the screen had before the pane.
    @property
    def view(self) -> LogView:
        return self.pane.view

    @property
    def filter_input(self) -> Input:
        return self.pane.filter_input

    @property
    def status(self) -> Static:
        return self.pane.status

    @property
    def error(self) -> str:
        return self.pane.error

    @property
    def last_saved(self) -> Path | None:
        return self.pane.last_saved

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.title_bar
        yield self.pane
        yield Footer()

    def on_mount(self) -> None:
        self.view.focus()
        if self.source.kind == "all":
            self._open_all_nodes()
        else:
            self._open_launcher()

    def _title(self) -> Text:
        shown = "all nodes" if self.source.kind == "all" else self.node
        note = f" {self.source.note}" if self.source.note else ""
        return Text(f"Logs · {self.cluster} / {shown}{note}")

    # -- sources -----------------------------------------------------------------------------

    def _begin(self, source: Source) -> LineInbox:
        """Make `source` the shown one: stop the others, empty the view, new inbox."""
        for group in ("logs.launcher", "logs.all", "logs.ray", "logs.ray-copy"):
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
        self.pane.label = source.label
        self.pane.clear()
        return self._inbox

    def _open_launcher(self) -> None:
        self.pane.error = ""
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

    def _open_all_nodes(self, ray_file: str | None = None) -> None:
        self.pane.error = ""
        self.merged_ray_file = ray_file
        inbox = self._begin(Source("all", ray_file) if ray_file else ALL_NODES)
        self._follow_all_nodes(inbox, ray_file)

    def _open_file_source(self) -> None:
        """Back from a Ray log to the launcher log, or to all nodes' when that was shown."""
        if self.file_source.kind == "all":
            self._open_all_nodes(self.merged_ray_file)
        else:
            self._open_launcher()

    @work(thread=True, exclusive=True, group="logs.all", exit_on_error=False)
    def _follow_all_nodes(self, inbox: LineInbox, ray_file: str | None = None) -> None:
        worker = get_current_worker()
        follow_all_nodes(
            self.logs_dir,
            inbox,
            lambda: self.post_message(LinesReady(inbox)),
            worker.cancelled_event,
            self.settings,
            ray_file=ray_file,
        )

    def ray_unavailable(self) -> str | None:
        """Why Ray cannot give this node's logs now, or None when it may."""
        if self.ray_client is None:
            return (
                "Ray logs unavailable: the cluster's Ray dashboard cannot be reached "
                "(the head is not running, or not reachable from here)"
            )
        if self.ray_node_id is None:
            return f"Ray logs unavailable: {self.node} is not a Ray node (it has not joined Ray)"
        return None

    def _ray_copies(self) -> dict[str, RayLogCopy]:
        from raycai_core import ray_log_copies

        return ray_log_copies.files(self.logs_dir, self.node)

    def _gone_note(self, copy: RayLogCopy) -> str:
        """`(node gone since T)`: T from the node's launcher record, else the copy's time."""
        from raycai_core import ray_log_copies
        from raycai_core.cluster.records import NodeRecord

        since = None
        try:
            record = NodeRecord.from_json(
                json.loads((self.logs_dir.parent / "nodes" / f"{self.node}.json").read_text())
            )
            since = record.updated_at if record is not None else None
        except (OSError, ValueError):
            pass
        return ray_log_copies.gone_note(since or ray_log_copies.last_written(copy))

    def _open_ray_copy(self, filename: str | None, why: str) -> bool:
        """Show the project's copy of a Ray log of this node (None: raylet.out or the first);
        False when the project has no copy of it."""
        copies = self._ray_copies()
        name = filename if filename in copies else default_ray_file({"copies": list(copies)})
        if name is None:
            return False
        copy = copies[name]
        note = why if why else self._gone_note(copy)
        self.ray_file = name
        self.pane.error = ""
        inbox = self._begin(Source("ray", name, note=note, copy=True))
        self._follow_copy(copy.path, inbox)
        return True

    @work(thread=True, exclusive=True, group="logs.ray-copy", exit_on_error=False)
    def _follow_copy(self, path: Path, inbox: LineInbox) -> None:
        worker = get_current_worker()
        follow_file(
            path,
            inbox,
            lambda: self.post_message(LinesReady(inbox)),
            worker.cancelled_event,
            self.settings,
        )

    @work(exclusive=True, group="logs.ray", exit_on_error=False)
    async def _follow_ray(self, filename: str | None) -> None:
        """Switch to a Ray log file of the node (None: raylet.out), once the node answers;
        to the project's copy when Ray cannot give it."""
        from raycai_core import ray_log_copies
        from raycai_core.ray.errors import RayDashboardError

        client, node_id = self.ray_client, self.ray_node_id
        assert client is not None and node_id is not None
        try:
            # Asked every time: it tells a dead node or a gone head before the view changes.
            listing = await client.list_logs(node_id)
        except RayDashboardError as exc:
            if not self._open_ray_copy(filename, ray_log_copies.unanswered_note(exc)):
                self._report(f"Ray logs of {self.node} unavailable: {exc}")
            return
        if filename not in {name for names in listing.values() for name in names}:
            filename = default_ray_file(listing)
        if filename is None:
            self._report(f"Ray logs unavailable: {self.node} lists no Ray log files")
            return
        self.ray_file = filename
        self.pane.error = ""
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
            inbox.put([Marker(f"… {filename} stopped: {exc} (p: its copy in the project) …")])
            self._lines_ready(inbox)
            self._report(f"Ray log {filename}: {exc} (t: back to the launcher log)")

    @work(exclusive=True, group="logs.ray-files", exit_on_error=False)
    async def _pick_ray_file(self) -> None:
        """Choose a Ray log file: Ray's listing of a node in Ray, else the node's copies;
        with all nodes shown, the copies of every node (merged in)."""
        from raycai_core import ray_log_copies
        from raycai_core.ray.errors import RayDashboardError

        if self.source.kind == "all":
            await self._pick_merged_ray_file()
            return
        files: list[str] = []
        listing: dict[str, list[str]] = {}
        why = ""  # why the copy is shown rather than Ray's file (empty: the node is gone)
        live = self.ray_unavailable() is None and not self.source.copy
        if live:
            assert self.ray_client is not None and self.ray_node_id is not None
            try:
                listing = await self.ray_client.list_logs(self.ray_node_id)
            except RayDashboardError as exc:
                live = False
                why = ray_log_copies.unanswered_note(exc)
            files = sorted({name for names in listing.values() for name in names})
        if not live:
            files = list(self._ray_copies())
        if not files:
            self._report(self.ray_unavailable() or f"{self.node} lists no Ray log files")
            return
        current = self.ray_file or default_ray_file(listing or {"files": files})
        choice = await self.app.push_screen_wait(RayLogPicker(files, current))
        if not choice:
            return
        if live:
            self._follow_ray(choice)
        else:
            self._open_ray_copy(choice, why)

    async def _pick_merged_ray_file(self) -> None:
        from raycai_core import ray_log_copies

        names = sorted(
            {
                name
                for node in ray_log_copies.nodes(self.logs_dir)
                for name in ray_log_copies.files(self.logs_dir, node)
            }
        )
        if not names:
            self._report("No node has copies of its Ray logs in the project yet")
            return
        none = "(launcher logs only)"
        choice = await self.app.push_screen_wait(
            RayLogPicker([none, *names], self.merged_ray_file or none)
        )
        if choice:
            self._open_all_nodes(None if choice == none else choice)

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
            self.pane.append(lines)
            self.batches += 1

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # tab moves the focus while the filter is edited
        return not (action == "switch_source" and self.filter_input.has_focus)

    def action_back(self) -> None:
        self.dismiss()

    def action_switch_source(self) -> None:
        if self.source.kind == "ray":
            self._open_file_source()
            return
        reason = self.ray_unavailable()
        if reason:
            if not self._open_ray_copy(self.ray_file, ""):
                self._report(reason)
            return
        self._follow_ray(self.ray_file)

    def action_toggle_all_nodes(self) -> None:
        if self.source.kind == "all":
            self._open_launcher()
        else:
            self._open_all_nodes(self.merged_ray_file)

    def node_choices(self) -> list[str]:
        """Every node with a launcher log or Ray log copies here, or alive in Ray, in node
        order; one that is not in Ray is labelled `(not in Ray)`."""
        from raycai_core import ray_log_copies
        from raycai_core.merged_logs import node_logs, node_sort_key

        nodes = set(node_logs(self.logs_dir)) | set(ray_log_copies.nodes(self.logs_dir))
        nodes |= set(self.ray_nodes)
        nodes.discard("autoscaler")
        nodes.discard("proxy")
        return [
            node if node in self.ray_nodes else f"{node} {NOT_IN_RAY}"
            for node in sorted(nodes, key=node_sort_key)
        ]

    @work(exclusive=True, group="logs.nodes", exit_on_error=False)
    async def action_pick_node(self) -> None:
        choices = self.node_choices()
        current = next((c for c in choices if c.split(" ", 1)[0] == self.node), None)
        choice = await self.app.push_screen_wait(RayLogPicker(choices, current, title="Node"))
        if choice:
            self.show_node(choice.split(" ", 1)[0])

    def show_node(self, node: str) -> None:
        """This node's logs, the same kind as shown (launcher, or Ray: Ray's or the copy)."""
        self.node = node
        self.ray_node_id = self.ray_nodes.get(node)
        self.launcher_log = self.logs_dir / f"{node}.log"
        self.ray_file = None
        was_ray = self.source.kind == "ray"
        self._open_launcher()  # stays when the node's Ray logs cannot be shown (said why)
        if was_ray:
            self.action_switch_source()

    def action_pick_ray_log(self) -> None:
        if self.source.kind != "all" and self.ray_unavailable() and not self._ray_copies():
            self._report(self.ray_unavailable() or "")
            return
        self._pick_ray_file()

    def _save_path(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.slug)
        owner = "" if self.source.kind == "all" else f"{self.node}-"
        stem = f"{owner}{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = self.save_dir / f"{stem}.txt", 1
        while path.exists():
            n += 1
            path = self.save_dir / f"{stem}-{n}.txt"
        return path

    # -- status ------------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A source or save that failed unexpectedly: say so, keep the screen alive."""
        if event.state is WorkerState.ERROR:
            self._report(f"{event.worker.name} failed: {event.worker.error}")

    def _report(self, error: str) -> None:
        self.pane.report(error)
