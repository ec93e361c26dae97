"""The first screen: every cluster of the project, one row each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from raycai_tui.messages import (
    ClustersPolled,
    Connected,
    ConnectFailed,
    OperationChanged,
    PollStatus,
    ReadinessChanged,
)
from raycai_tui.screens.base import RaycaiScreen
from raycai_tui.widgets.clusters_table import ClustersTable, summary_rows
from raycai_tui.widgets.header import RaycaiHeader
from raycai_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from collections.abc import Callable

    from raycai_tui.services import Snapshot


class ClustersScreen(RaycaiScreen):
    BINDINGS = [
        Binding("n", "new", "New", id="clusters.new", tooltip="Create a cluster"),
        Binding("enter", "open", "Open", id="clusters.open", tooltip="Open the selected cluster"),
        Binding(
            "ctrl+d",
            "delete",
            "Delete",
            id="clusters.delete",
            tooltip="Delete the selected cluster's applications (asks first)",
        ),
        Binding(
            "z",
            "suspend",
            "Suspend",
            id="clusters.suspend",
            tooltip="Suspend the selected cluster: its applications stop, holding no quota "
            "(asks first); on a suspended cluster, resume it",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="clusters.filter",
            tooltip="Show only the clusters whose name contains some text",
        ),
        Binding("q", "app.quit", "Quit", id="clusters.quit", tooltip="Quit raycai-tui"),
        Binding(
            "escape",
            "clear_filter",
            "Clear filter",
            id="clusters.clear_filter",
            tooltip="Show every cluster again",
        ),
    ]
    MUTATING = frozenset({"new", "delete", "suspend"})
    help_title = "clusters"

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: Snapshot | None = None
        self.filter_text = ""
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield RaycaiHeader()
        yield Input(placeholder="filter clusters by name (enter: done, esc: clear)", id="filter")
        yield ClustersTable(id="clusters")
        yield Static(Text("Connecting to the workspace…", style="dim"), id="empty")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(ClustersTable).focus()
        status = self.query_one(StatusLine)
        status.set_message("connecting to the workspace…", style="dim")
        self._show_notes()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.filter_text) or self.query_one("#filter", Input).display
        return super().check_action(action, parameters)

    def _show_notes(self) -> None:
        app = self.raycai
        mode = "read-only" if app.readonly else ("healing on" if app.healing else "healing off")
        # The new clusters the app watches until ready (readiness.progress_line).
        joining = [f"{name}: {line}" for name, line in app.joining.items()]
        self.query_one(StatusLine).set_notes(*joining, mode)

    # -- data from the app ------------------------------------------------------------

    def on_connected(self, message: Connected) -> None:
        self.query_one(StatusLine).set_message(None)
        self.query_one("#empty", Static).update(Text("Reading the project's clusters…"))

    def on_connect_failed(self, message: ConnectFailed) -> None:
        self.query_one(StatusLine).set_message(f"not connected: {message.reason}")
        self.query_one("#empty", Static).update(
            Text(f"Could not connect.\n\n{message.reason}\n\nPress q to quit.", style="red")
        )

    def on_clusters_polled(self, message: ClustersPolled) -> None:
        self.snapshot = message.snapshot
        self._dirty = True
        if self.is_current:
            self.render_snapshot()

    def on_poll_status(self, message: PollStatus) -> None:
        self.query_one(StatusLine).set_source("CML", message.backoff)
        self._show_notes()  # a watch that ended (the cluster was deleted) leaves the line

    def on_readiness_changed(self, message: ReadinessChanged) -> None:
        self._show_notes()

    def on_healing_toggled(self) -> None:
        self._show_notes()

    def on_operation_changed(self, message: OperationChanged) -> None:
        if message.progress is None:  # started, changed or ended: the OPERATION column
            self.refresh_now()

    def on_screen_resume(self) -> None:
        self._show_notes()
        if self._dirty:
            self.render_snapshot()

    def render_snapshot(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        self._dirty = False
        shown = [s for s in snapshot.summaries if self.filter_text in s.name]
        now = snapshot.taken_at
        operations = self.raycai.operations.labels()
        self.query_one(ClustersTable).reconcile(summary_rows(shown, now, operations))
        empty = self.query_one("#empty", Static)
        if shown:
            empty.display = False
        else:
            empty.display = True
            empty.update(
                Text(f"No cluster matches {self.filter_text!r}.", style="dim")
                if snapshot.summaries
                else Text("No clusters in this project yet. Press n to create one.", style="dim")
            )

    def refresh_now(self) -> None:
        """Re-render after a local change (an operation started or ended)."""
        self._dirty = True
        if self.is_current:
            self.render_snapshot()

    # -- selection --------------------------------------------------------------------

    @property
    def selected(self) -> str | None:
        return self.query_one(ClustersTable).selected_key

    def select_cluster(self, name: str) -> None:
        """Put the cursor on `name`'s row (a user back from a cluster finds it selected, also
        one the create form opened or was left while it creates); its row when it arrives."""
        self.query_one(ClustersTable).select_key(name)

    def _selected_or_tell(self) -> str | None:
        name = self.selected
        if name is None:
            self.notify("No cluster selected.", severity="warning")
        return name

    @on(DataTable.RowSelected, "#clusters")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    # -- actions ----------------------------------------------------------------------

    def action_open(self) -> None:
        name = self._selected_or_tell()
        if name is None:
            return
        from raycai_tui.screens.cluster import ClusterScreen

        self.app.push_screen(ClusterScreen(name))
        if self._suspended(name) and not self.raycai.readonly:
            self.confirm_suspend(name)  # on the cluster screen: asks to resume it

    def _suspended(self, name: str) -> bool:
        summary = self.snapshot.summary(name) if self.snapshot else None
        return bool(summary and summary.desired and summary.desired.state == "suspended")

    def action_suspend(self) -> None:
        name = self._selected_or_tell()
        if name is not None:
            self.confirm_suspend(name)

    def confirm_suspend(self, name: str) -> None:
        """Ask, then suspend `name`, or resume it when it is suspended (the cluster screen's
        `z` and `enter` on a suspended cluster too)."""
        from raycai_tui.screens.confirm import ConfirmScreen

        summary = self.snapshot.summary(name) if self.snapshot else None
        if summary is None or summary.desired is None:
            self.notify(f"{name} has no cluster.json: nothing to suspend.", severity="warning")
            return
        if self._suspended(name):
            from raycai_core.cluster.suspend import suspended_note

            question = (
                f"Resume cluster {name}? It is {suspended_note(summary.desired)}. Its "
                "applications start again and Serve is re-applied."
            )
            items = [f"{m.app.name}  ({m.node}, {m.app.status.value})" for m in summary.members]

            def resume(yes: bool | None) -> None:
                if yes:
                    self.raycai.operations.resume(name)

            self.app.push_screen(ConfirmScreen(f"Resume {name}", question, items, "Resume"), resume)
            return
        question = (
            f"Suspend cluster {name}? Its applications stop (workers above the minimum are "
            "deleted) and hold no quota until it is resumed; Ray and everything running on it "
            "stop."
        )
        items = [f"{m.app.name}  ({m.node}, {m.app.status.value})" for m in summary.members]

        def suspend(yes: bool | None) -> None:
            if yes:
                self.raycai.operations.suspend(name)

        self.app.push_screen(ConfirmScreen(f"Suspend {name}", question, items, "Suspend"), suspend)

    def action_new(self) -> None:
        from raycai_tui.screens.create import CreateScreen

        if self.connected_services() is None:
            return
        names = {s.name for s in self.snapshot.summaries} if self.snapshot else set()
        names |= {op.cluster for op in self.raycai.operations.running() if op.kind == "create"}
        self.app.push_screen(CreateScreen(existing=names))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()
        self.refresh_bindings()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(ClustersTable).focus()
        self.refresh_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_now()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one(ClustersTable).focus()
        self.refresh_bindings()

    def action_delete(self) -> None:
        name = self._selected_or_tell()
        if name is None:
            return
        self.confirm_delete(name)

    def _cluster_dir(self, name: str) -> str:
        """Where `name`'s launcher files are, relative to the project root."""
        from raycai_core.cluster.layout import CLUSTERS, ClusterPaths, launcher_folder

        services = self.services
        if services is None:
            return f"{launcher_folder()}/{CLUSTERS}/{name}"
        return str(ClusterPaths(services.target.project_dir, name).relative)

    def confirm_delete(self, name: str, on_yes: Callable[[], None] | None = None) -> None:
        """Ask, listing what goes, then delete (also used by the cluster screen, which leaves
        with `on_yes`: a user who answers no stays where they were)."""
        from raycai_tui.screens.confirm import ConfirmScreen

        summary = self.snapshot.summary(name) if self.snapshot else None
        members = summary.members if summary else []
        items = [f"{m.app.name}  ({m.node}, {m.app.status.value})" for m in members]
        items.append(f"launcher files in {self._cluster_dir(name)}/ (logs are kept)")
        question = (
            f"Delete cluster {name}? This deletes {len(members)} application(s); "
            "Ray and everything running on it stop."
        )
        running = self.raycai.operations.running(name)
        if running:
            question += " This stops " + ", ".join(op.label for op in running)

        def answered(yes: bool | None) -> None:
            if yes:
                self.raycai.operations.delete(name)
                if on_yes is not None:
                    on_yes()

        self.app.push_screen(ConfirmScreen(f"Delete {name}", question, items), answered)
