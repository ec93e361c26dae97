"""One cluster: its applications, what Ray says, its events; scale, restart, logs, delete.

Data comes from two Pollers (raycai_tui.poller), each never overlapping itself:
- the app's cluster-list poll (one CML call for every cluster): on each snapshot the table is
  re-merged with the project files at once, reusing the last Ray answer;
- this screen's Ray poll (dashboard calls only, no CML call), with its own backoff; it pauses
  while another screen (the logs, Jobs, a dialog) covers this one and catches up when shown.

Changes (scale, restart, delete) are requests to the app's operations service: they outlive
this screen, and `+`/`-` send deltas that the core applies to the stored count of the
selected row's worker group (a cluster with several groups shows a row per group). A key that
needs the cluster's data is dimmed, and says why when pressed, until that data arrived.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static

from raycai_tui.format import describe_error
from raycai_tui.messages import ClusterEvent, ClustersPolled, OperationChanged, PollStatus
from raycai_tui.poller import Poller
from raycai_tui.screens.base import RaycaiScreen
from raycai_tui.widgets.apps_table import AppsTable, grouped
from raycai_tui.widgets.events import EventsLog
from raycai_tui.widgets.footer import KeyFooter
from raycai_tui.widgets.header import RaycaiHeader
from raycai_tui.widgets.ray_panel import RayPanel
from raycai_tui.widgets.status_line import StatusLine
from raycai_tui.widgets.text_line import show_text

if TYPE_CHECKING:
    from raycai_core.cluster.apps import ClusterApp
    from raycai_core.cluster.lifecycle import ClusterSummary
    from raycai_core.cluster.observe import ClusterFiles
    from raycai_core.cluster.view import ClusterView, NodeRow, RayNodeInfo
    from raycai_core.work.session import ClusterWork
    from raycai_tui.backoff import Backoff
    from raycai_tui.operations import Operation

# The Ray poll asks for usage and jobs on every third tick only (the nodes on each).
FULL_EVERY = 3
# Keys that act on the cluster's stored state (the app's snapshot of it is enough)...
NEEDS_SUMMARY = frozenset({"scale_up", "scale_down", "scale", "delete", "suspend"})
# ...and keys that act on a node row (this screen's merged view).
NEEDS_VIEW = frozenset({"logs", "restart", "addresses"})
# The footer's words for the scale keys on a cluster with several worker groups.
GROUP_KEYS = {
    "cluster.scale_up": "+1 to group",
    "cluster.scale_down": "-1 from group",
    "cluster.scale": "Scale group",
}


def autoscaler_keeps(view: ClusterView) -> bool:
    """Ray's autoscaler keeps the cluster (by its head's record at the view's time)."""
    if not view.autoscaled:
        return False
    from raycai_core.cluster.autoscaler import autoscaler_running

    head = view.head_row.record if view.head_row else None
    return autoscaler_running(head, view.observed_at)


def operations_text(operations: list[Operation]) -> Text:
    return Text("  ·  ".join(op.label for op in operations), style="bold yellow")


def workers_text(view: ClusterView) -> str:
    """`workers: 2 wanted, 2 running, 2 joined Ray`; with autoscaling the summed bounds and
    the target (applications that exist), never a "wanted" that reads like a fault; with
    several groups it says how many (each group's counts are in its table row)."""
    groups = [counts for counts in view.groups if counts.in_spec]
    where = f" in {len(groups)} groups" if len(groups) > 1 else ""
    running, joined = view.workers_running, view.workers_joined
    if view.autoscaled:
        low, high = sum(c.min for c in groups), sum(c.max for c in groups)
        return (
            f"workers{where}: min {low}, max {high}, target {len(view.worker_rows)}, "
            f"{running} running, {joined} joined Ray"
        )
    return f"workers{where}: {view.desired_workers} wanted, {running} running, {joined} joined Ray"


def title_text(view: ClusterView, healing: bool) -> Text:
    text = Text(view.name, style="bold")
    desired = view.desired
    if desired is None:
        text.append("  no cluster.json (orphaned applications, or deleted)", style="red")
        return text
    text.append(f"  ·  {workers_text(view)}  ·  ")
    if desired.state == "deleting":
        text.append("DELETING", style="bold yellow")
    elif desired.state == "suspended":
        from raycai_core.cluster.suspend import suspended_note

        text.append("SUSPENDED", style="bold blue")
        note = (suspended_note(desired, view.observed_at) or "").removeprefix("suspended")
        text.append(f"{note}  ·  z: resume", style="dim")
        return text
    elif view.ready:
        text.append("READY", style="bold green")
    elif view.updating:  # its progress is on the work line
        text.append("UPDATING", style="bold cyan")
    else:
        text.append("NOT READY", style="bold yellow")
    if view.autoscaled:
        from raycai_core.cluster.autoscaler import keeper

        head = view.head_row.record if view.head_row else None
        text.append(f"  ·  kept by {keeper(desired, head, view.observed_at)}", style="dim")
        return text
    heals = healing and desired.spec.healing
    text.append(f"  ·  healing {'on' if heals else 'off'}", style="dim")
    return text


class ClusterScreen(RaycaiScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="cluster.back", tooltip="Back to the clusters list"),
        Binding(
            "plus",
            "scale_up",
            "+1 worker",
            id="cluster.scale_up",
            key_display="+",
            tooltip="Add one worker to the selected row's group",
        ),
        Binding(
            "minus",
            "scale_down",
            "-1 worker",
            id="cluster.scale_down",
            key_display="-",
            tooltip="Remove one worker of the row's group (failed, unjoined, idle first)",
        ),
        Binding(
            "s",
            "scale",
            "Scale",
            id="cluster.scale",
            tooltip="Set or change a group's number of workers (asks which group)",
        ),
        Binding(
            "u",
            "update",
            "Update",
            id="cluster.update",
            show=False,
            tooltip="Change node settings: replace the workers one at a time (rolling update)",
        ),
        Binding("l", "logs", "Logs", id="cluster.logs", tooltip="Logs of the selected node"),
        Binding(
            "L",
            "logs(True)",
            "All logs",
            id="cluster.all_logs",
            show=False,
            tooltip="Every node's launcher log, merged by time",
        ),
        Binding(
            "r",
            "restart",
            "Restart",
            id="cluster.restart",
            tooltip="Restart the selected node's application (asks first)",
        ),
        Binding(
            "o",
            "addresses",
            "Addresses",
            id="cluster.addresses",
            tooltip="Ray dashboard URL and ray:// client address",
        ),
        Binding(
            "j", "jobs", "Jobs", id="cluster.jobs", tooltip="Ray jobs: list, logs, submit, stop"
        ),
        Binding("v", "serve", "Serve", id="cluster.serve", tooltip="Ray Serve applications"),
        Binding(
            "ctrl+d",
            "delete",
            "Delete",
            id="cluster.delete",
            tooltip="Delete this cluster (asks first)",
        ),
        Binding(
            "z",
            "suspend",
            "Suspend",
            id="cluster.suspend",
            tooltip="Suspend the cluster: its applications stop (asks first); on a suspended "
            "cluster, resume it",
        ),
        Binding("q", "app.quit", "Quit", id="cluster.quit", tooltip="Quit raycai-tui"),
    ]
    MUTATING = frozenset({"scale_up", "scale_down", "scale", "restart", "delete", "update"})
    help_note = (
        "Worker groups: + and - act on the group of the selected row (a worker's, or the "
        "group's own row); on the head row, on the only group. s asks which group when the "
        "cluster has several."
    )

    class Merged(Message):
        def __init__(self, view: ClusterView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, name: str) -> None:
        super().__init__()
        self.cluster = name
        self.help_title = f"cluster {name}"
        self.view: ClusterView | None = None
        self.members: list[ClusterApp] = []
        # Ray's node list, jobs and autoscaler: dashboard calls only (no CML call).
        self.ray_poller: Poller[tuple[ClusterView, str]] = Poller(
            self,
            self._fetch_ray,
            self._ray_arrived,
            name=f"poll Ray of {name}",
            group="ray-poll",
            interval=2.0,
            maximum=10.0,
            check=lambda answer: answer[0].ray_error if answer[0].ray_not_answering else None,
            on_status=self._show_ray_status,
            # A suspended cluster has no Ray to ask (its head is stopped, on purpose).
            paused=lambda: not self.is_current or self.suspended,
            follows=True,  # polled on each of the app's ticks (on_clusters_polled)
        )
        self._ray_nodes: list[RayNodeInfo] | None = None  # no Ray answer yet
        self._ray_error: str | None = None
        self._dirty = False
        self._work: ClusterWork | None = None  # the jobs client, kept between polls
        self._group_keys = False  # the footer names the scale keys for groups
        self._ray_ticks = 0  # Ray polls so far (every FULL_EVERY-th asks usage and jobs)
        self._work_text: str | None = None  # the last jobs/autoscaler line (None: ask)

    def compose(self) -> ComposeResult:
        yield RaycaiHeader()
        yield Static(Text(self.cluster, style="bold"), id="cluster-title")
        yield Static("", id="operations")
        yield Static("", id="work-line")
        yield AppsTable(id="apps")
        with Horizontal(id="bottom"):
            yield RayPanel(id="ray")
            yield EventsLog(id="events")
        yield StatusLine(id="status")
        yield KeyFooter()

    @property
    def ray_backoff(self) -> Backoff:
        return self.ray_poller.backoff

    def on_mount(self) -> None:
        app = self.raycai
        self.ray_backoff.interval = app.settings.poll_s or 2.0
        events = self.query_one(EventsLog)
        for event in app.events.of(self.cluster):
            events.add(event)
        status = self.query_one(StatusLine)
        status.set_source("CML", app.poll_backoff)
        status.set_source("Ray", self.ray_backoff)
        self._show_notes()
        self._show_operations()
        self.query_one(AppsTable).focus()
        if app.snapshot is not None:
            self.members = app.snapshot.members.get(self.cluster, [])
            self.remerge()
        if app.polling_enabled:
            self.ray_poller.start()

    def _show_notes(self) -> None:
        app = self.raycai
        note = "read-only" if app.readonly else ("healing on" if app.healing else "healing off")
        self.query_one(StatusLine).set_notes(note)

    def _show_operations(self) -> None:
        running = self.raycai.operations.running(self.cluster)
        line = self.query_one("#operations", Static)
        line.display = bool(running)
        line.update(operations_text(running))

    # -- keys that wait for data -------------------------------------------------------

    @property
    def summary(self) -> ClusterSummary | None:
        """The cluster in the app's latest snapshot (its stored state and applications)."""
        snapshot = self.raycai.snapshot
        return snapshot.summary(self.cluster) if snapshot is not None else None

    def waiting_reason(self, action: str) -> str | None:
        """Why `action` cannot run yet (its data has not arrived), or None."""
        if action in NEEDS_SUMMARY and self.summary is None:
            if self.raycai.snapshot is None:
                return f"Waiting for the first data of {self.cluster}."
            return f"{self.cluster} is not in the project's cluster list (deleted?)."
        if action in NEEDS_VIEW and self.view is None:
            return f"Waiting for the first data of {self.cluster}."
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if allowed and self.waiting_reason(action) is not None:
            return None  # shown dimmed in the footer; a press says why (on_key)
        return allowed

    def on_key(self, event: events.Key) -> None:
        """A press of a key dimmed for want of data says why (Textual skips its action)."""
        active = self.active_bindings.get(event.key)
        if active is None or active.enabled or active.node is not self:
            return
        reason = self.waiting_reason(active.binding.action)
        if reason is not None:
            event.stop()
            self.notify(reason, severity="warning", timeout=4)

    # -- data -------------------------------------------------------------------------

    def on_clusters_polled(self, message: ClustersPolled) -> None:
        self.members = message.snapshot.members.get(self.cluster, [])
        self.refresh_bindings()  # the keys that waited for the cluster's data
        if self.is_current:
            self.remerge()
            # Ray's poll follows the app's (the same tick's files; one status repaint for
            # both), unless it is backing off after failures.
            if not self.ray_poller.running and not self.ray_backoff.stale:
                self.ray_poller.poll_now()
        else:  # covered by a dialog or the logs: merge when shown again
            self._dirty = True

    def on_poll_status(self, message: PollStatus) -> None:
        # While the Ray poll that followed this tick runs, its answer shows both sources.
        backoff = message.backoff
        show = backoff.stale or not self.ray_poller.running
        self.query_one(StatusLine).set_source("CML", backoff, show=show)

    def on_cluster_event(self, message: ClusterEvent) -> None:
        if message.event.cluster == self.cluster:
            self.query_one(EventsLog).add(message.event)

    def on_healing_toggled(self) -> None:
        self._show_notes()
        if self.view is not None:
            self.show_view(self.view)

    def on_operation_changed(self, message: OperationChanged) -> None:
        operation = message.operation
        if operation.cluster != self.cluster or message.progress is not None:
            return
        self._show_operations()
        if operation.ended:
            self._work_text = None  # ask for everything again
            self.ray_poller.poll_soon(0.2)

    def remerge(self) -> None:
        """The new app list with the project files and the last Ray answer (no API call):
        at once from the files the app's snapshot read this tick, else read in a worker."""
        if self.services is None:
            return
        files = self._snapshot_files()
        if files is None:
            self._remerge_read()
            return
        from raycai_core.cluster.view import merge_cluster

        view = merge_cluster(
            self.cluster,
            files.desired,
            self.members,
            dict(files.records),
            files.head,
            self._ray_nodes,
            self._ray_error,
            update=files.update,
        )
        self.show_view(view)

    def _snapshot_files(self, max_age: float | None = None) -> ClusterFiles | None:
        """This cluster's project files from the app's latest snapshot (None: it has none,
        or it is older than `max_age` seconds)."""
        snapshot = self.raycai.snapshot
        if snapshot is None:
            return None
        if max_age is not None and time.time() - snapshot.taken_at > max_age:
            return None
        return snapshot.files(self.cluster)

    @work(group="merge", exclusive=True, exit_on_error=False)
    async def _remerge_read(self) -> None:
        services = self.services
        if services is None:
            return
        view = await services.observer.observe(self.cluster, members=self.members, with_ray=False)
        self.post_message(self.Merged(view.with_ray(self._ray_nodes, self._ray_error)))

    def on_cluster_screen_merged(self, message: ClusterScreen.Merged) -> None:
        self.show_view(message.view)

    async def _fetch_ray(self) -> tuple[ClusterView, str]:
        services = self.services
        if services is None:
            raise RuntimeError("not connected to a workspace")
        # The files of the app's last snapshot (read this tick), unless its poll fell behind.
        files = self._snapshot_files(max_age=2 * self.ray_backoff.interval + 1.0)
        # Usage and jobs are asked on every FULL_EVERY-th tick (or when the alive nodes
        # changed, the screen came back, an operation ended); the node list on every tick.
        full = self._ray_ticks % FULL_EVERY == 0 or self._work_text is None
        self._ray_ticks += 1
        view = await services.observer.observe(
            self.cluster, members=self.members, files=files, reuse_usage=not full
        )
        if full or view.ray_error:
            self._work_text = await self._work_line(view)
        return view, self._work_text

    async def _work_line(self, view: ClusterView) -> str:
        """Jobs (running, pending, failed) and the autoscaler, in one line; a failure of
        either is said in the line and never fails the poll."""
        from raycai_core.cluster.autoscaler_status import fetch_status, summary_line
        from raycai_core.cluster.layout import ClusterPaths
        from raycai_core.work.jobs import summarise_jobs
        from raycai_core.work.session import ClusterWork

        services = self.services
        assert services is not None
        parts: list[str] = []
        if view.head is not None and not view.ray_error:
            if self._work is None:
                self._work = ClusterWork(services.target.project_dir, self.cluster)
            try:
                client = await self._work.client()
                parts.append(summarise_jobs(await client.list_jobs()).line())
            except Exception as exc:  # shown in the line, retried next poll
                parts.append(f"jobs: unknown ({describe_error(exc)})")
        paths = ClusterPaths(services.target.project_dir, self.cluster)
        try:
            autoscaler = summary_line(await fetch_status(services.observer, paths, view))
        except Exception as exc:
            autoscaler = f"autoscaler: unknown ({describe_error(exc)})"
        if autoscaler:
            parts.append(autoscaler)
        # A rolling update, also one started from `raycai up` in another terminal: read with
        # the cluster's files; shown while it runs, and when it stopped or was interrupted.
        if view.update is not None and view.update.record.state != "done":
            parts.append(view.update.line())
        return "  ·  ".join(parts)

    @property
    def suspended(self) -> bool:
        desired = self.view.desired if self.view is not None else None
        return desired is not None and desired.state == "suspended"

    def _ray_arrived(self, answer: tuple[ClusterView, str]) -> None:
        """A Ray poll's view; the poller judged it (Ray not answering is a failure)."""
        view, work_line = answer
        self._ray_nodes = view.ray_nodes if view.ray_known else None
        self._ray_error = view.ray_error
        self.query_one(RayPanel).record(view)
        line = self.query_one("#work-line", Static)
        line.display = bool(work_line)
        show_text(line, Text(work_line, style="dim"))
        self.show_view(view)

    def _show_ray_status(self, backoff: Backoff) -> None:
        self.query_one(StatusLine).set_source("Ray", backoff)

    def show_view(self, view: ClusterView) -> None:
        """Render a view (tests call this with fixed data); deferred while covered."""
        if self.view is None:
            self.refresh_bindings()  # the keys that waited for the first view
        self.view = view
        if not self.is_current:
            self._dirty = True
            return
        self._dirty = False
        self.query_one(AppsTable).show(view, autoscaler_keeps(view))
        self._name_scale_keys(grouped(view))
        self.query_one(RayPanel).show(view, self.ray_backoff.failing_since)
        if self.suspended:  # not polled meanwhile: no Ray freshness to report
            self.query_one(StatusLine).drop_source("Ray")
        show_text(self.query_one("#cluster-title", Static), title_text(view, self.raycai.healing))

    def on_screen_resume(self) -> None:
        self._show_notes()
        self._work_text = None  # back from the Jobs screen, say: ask for everything again
        self.ray_poller.resume()
        if self._dirty:
            self._dirty = False
            if self.services is None and self.view is not None:
                self.show_view(self.view)
            else:
                self.remerge()

    def _name_scale_keys(self, groups: bool) -> None:
        """The footer's words for `+`, `-` and `s`: `+1 to group`... on a cluster with
        several worker groups, `+1 worker`... otherwise (the bindings keep their ids and
        keys, so a --keymap still applies)."""
        if groups == self._group_keys:
            return
        self._group_keys = groups
        words = {b.id: b.description for b in self.BINDINGS if isinstance(b, Binding)}
        if groups:
            words.update(GROUP_KEYS)
        table = self._bindings.key_to_bindings
        for key, bindings in table.items():
            table[key] = [
                dataclasses.replace(b, description=words[b.id]) if b.id in GROUP_KEYS else b
                for b in bindings
            ]
        self.refresh_bindings()

    # -- selection --------------------------------------------------------------------

    @property
    def selected_row(self) -> NodeRow | None:
        key = self.query_one(AppsTable).selected_key
        if key is None or self.view is None:
            return None
        return self.view.row(key)

    def _row_or_tell(self) -> NodeRow | None:
        row = self.selected_row
        if row is None:
            self.notify("No node selected.", severity="warning")
        return row

    # -- scale: requests to the app's operations service ------------------------------

    @property
    def group_names(self) -> tuple[str, ...]:
        """The cluster's worker groups, from its stored spec (the app's snapshot)."""
        summary = self.summary
        desired = summary.desired if summary is not None else None
        return desired.spec.group_names if desired is not None else ()

    @property
    def selected_group(self) -> str | None:
        """The worker group of the selected row (a worker's, or a group's row); None on the
        head or with nothing selected."""
        key = self.query_one(AppsTable).selected_key
        if key is None:
            return None
        row = self.view.row(key) if self.view is not None else None
        if row is not None:
            return row.group
        return key if key in self.group_names else None  # a group's row is keyed by its name

    def _group_to_scale(self) -> tuple[bool, str | None]:
        """(scale?, the group: None for a cluster's only one). With several groups it is the
        selected row's; on the head row the user is told to pick a worker row."""
        names = self.group_names
        if len(names) <= 1:
            return True, None
        group = self.selected_group
        if group is None:
            self.notify(
                f"{self.cluster} has {len(names)} worker groups ({', '.join(names)}): "
                "select a worker row of the group to scale",
                severity="warning",
            )
            return False, None
        if group not in names:
            self.notify(
                f"group {group} is no longer in {self.cluster}'s spec: `raycai up` removes it",
                severity="warning",
            )
            return False, None
        return True, group

    def _scale_by(self, delta: int) -> None:
        from raycai_core.cluster.lifecycle import ScaleTarget

        go, group = self._group_to_scale()
        if go:
            self.raycai.operations.scale(self.cluster, ScaleTarget(delta=delta), group=group)

    def action_scale_up(self) -> None:
        self._scale_by(1)

    def action_scale_down(self) -> None:
        self._scale_by(-1)

    def action_scale(self) -> None:
        from raycai_tui.screens.scale import ScaleChoice, ScaleScreen

        summary = self.summary
        desired = summary.desired if summary is not None else None
        if desired is None:
            self.notify(f"{self.cluster} has no cluster.json: nothing to scale", severity="error")
            return
        spec = desired.spec
        counts = {name: spec.group(name).count for name in spec.group_names}
        selected = self.selected_group
        several = len(counts) > 1

        def chosen(choice: ScaleChoice | None) -> None:
            if choice is not None:
                group = choice.group if several else None
                self.raycai.operations.scale(self.cluster, choice.target, group=group)

        self.app.push_screen(
            ScaleScreen(self.cluster, counts, selected if selected in counts else None), chosen
        )

    def action_update(self) -> None:
        from raycai_tui.screens.update import UpdateChoice, UpdateScreen

        summary = self.summary
        desired = summary.desired if summary is not None else None
        if desired is None or self.view is None:
            self.notify(f"{self.cluster}: its data has not arrived yet", severity="warning")
            return

        def chosen(choice: UpdateChoice | None) -> None:
            if choice is not None:
                self.raycai.operations.update(choice.spec, restart_head=choice.restart_head)

        rows = self.view.worker_rows
        self.app.push_screen(UpdateScreen(desired.spec, rows, self.selected_group), chosen)

    # -- restart, logs, addresses, delete ---------------------------------------------

    def action_restart(self) -> None:
        from raycai_tui.screens.confirm import ConfirmScreen

        row = self._row_or_tell()
        if row is None or self.connected_services() is None:
            return
        if row.app is None:
            self.notify(f"{row.node} has no application to restart.", severity="warning")
            return
        app = row.app.app
        effect = (
            "Ray's head stops and starts again: every worker rejoins, running jobs are lost."
            if row.role == "head"
            else "Ray on this node stops and starts again; its tasks are retried elsewhere."
        )
        question = f"Restart {row.node}? {effect}"
        items = [f"{app.name}  ({app.status.value})"]

        def answered(yes: bool | None) -> None:
            if yes:
                self.raycai.operations.restart(self.cluster, row.node, app.id)

        self.app.push_screen(
            ConfirmScreen(f"Restart {row.node}", question, items, yes_label="Restart"), answered
        )

    async def action_logs(self, all_nodes: bool = False) -> None:
        row = (self.selected_row or (self.view and self.view.head_row)) if all_nodes else None
        row = row or self._row_or_tell()
        services = self.connected_services()
        if row is None or services is None or self.view is None:
            return
        try:
            from raycai_tui.screens.logs import LogsScreen
        except ImportError:
            self.notify("The log view is not part of this build yet.", severity="warning")
            return
        from raycai_core.cluster.layout import ClusterPaths

        client = None
        if self.view.head is not None:
            try:
                client = await services.observer.dashboard(self.cluster, self.view.head)
            except Exception as exc:  # the launcher log still works without Ray
                self.notify(
                    f"Ray logs unavailable: {describe_error(exc)}",
                    severity="warning",
                    markup=False,
                )
        launcher_log = ClusterPaths(services.target.project_dir, self.cluster).node_log(row.node)
        self.app.push_screen(
            LogsScreen(
                cluster=self.cluster,
                node=row.node,
                launcher_log=launcher_log,
                ray_client=client,
                ray_node_id=row.ray.node_id if row.ray else None,
                all_nodes=all_nodes,
                ray_nodes={r.node: r.ray.node_id for r in self.view.rows if r.ray and r.ray.alive},
            )
        )

    def action_addresses(self) -> None:
        from raycai_core.cluster.layout import ClusterPaths
        from raycai_tui.screens.addresses import Addresses, AddressesScreen

        services = self.connected_services()
        view = self.view
        if services is None or view is None:
            return
        head_row = view.head_row
        head_app = head_row.app.app if head_row and head_row.app else None
        head = view.head
        note = None
        if head is None:
            note = "The head has not published its address yet (head.json)."
        addresses = Addresses(
            app_url=services.app_url(head_app.subdomain) if head_app else None,
            dashboard_url=head.dashboard_url if head else None,
            client_address=head.client_address if head else None,
            gcs_address=head.gcs_address if head else None,
            note=note,
            token_path=ClusterPaths(services.target.project_dir, self.cluster).auth_token,
        )
        self.app.push_screen(AddressesScreen(self.cluster, addresses))

    async def on_unmount(self) -> None:
        if self._work is not None:
            await self._work.aclose()

    def action_jobs(self) -> None:
        from raycai_tui.screens.jobs import JobsScreen

        services = self.connected_services()
        if services is not None:
            self.app.push_screen(JobsScreen(self.cluster, services.target.project_dir))

    def action_serve(self) -> None:
        from raycai_tui.screens.serve import ServeScreen

        services = self.connected_services()
        if services is not None:
            self.app.push_screen(ServeScreen(self.cluster, services.target.project_dir))

    def action_delete(self) -> None:
        from raycai_tui.screens.clusters import ClustersScreen

        base = next((s for s in self.app.screen_stack if isinstance(s, ClustersScreen)), None)
        if base is not None:
            base.confirm_delete(self.cluster, on_yes=self._leave_deleted)

    def _leave_deleted(self) -> None:
        """Back to the list, where the deletion's row shows it (this screen, on top again once
        the dialog closed, is of a cluster that goes)."""
        if self.app.screen is self:
            self.app.pop_screen()

    def action_suspend(self) -> None:
        """Suspend after asking (resume, on a suspended cluster): the clusters screen's."""
        from raycai_tui.screens.clusters import ClustersScreen

        if self.raycai.readonly:  # (not in MUTATING: that set is the rolling update's line)
            self.notify("Read-only mode: not suspending or resuming.", severity="warning")
            return

        base = next((s for s in self.app.screen_stack if isinstance(s, ClustersScreen)), None)
        if base is not None:
            base.confirm_suspend(self.cluster)

    def action_back(self) -> None:
        from raycai_tui.screens.clusters import ClustersScreen

        self.app.pop_screen()  # the operations of the app go on (shown in the list)
        base = self.app.screen
        if isinstance(base, ClustersScreen):  # the row of the cluster just left is selected
            base.select_cluster(self.cluster)
