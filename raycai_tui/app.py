"""`raycai-tui`: the App (services, the cluster-list poll, the watch of new clusters until
ready, healing) and `main()`.

The first frame comes before anything slow: the target is resolved and raycai_core (httpx,
pydantic) imported in a worker after the first refresh. Screens own their own work; the App
only holds what they share: the services, the latest snapshot, running operations, events.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState

from raycai_core.aio import DaemonThreadExecutor
from raycai_tui.format import describe_error
from raycai_tui.messages import (
    ClusterEvent,
    ClustersPolled,
    Connected,
    ConnectFailed,
    Event,
    EventStore,
    HealingToggled,
    PollStatus,
    ReadinessChanged,
)
from raycai_tui.operations import Operations
from raycai_tui.poller import Poller
from raycai_tui.screens.base import RaycaiScreen
from raycai_tui.screens.clusters import ClustersScreen
from raycai_tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.message import Message

    from raycai_core.cluster.apps import ClusterApp
    from raycai_core.cluster.desired import Desired
    from raycai_core.target import Target
    from raycai_tui.backoff import Backoff
    from raycai_tui.healing import HealPlanner
    from raycai_tui.services import Services, Snapshot


@dataclass(frozen=True)
class Settings:
    local: bool | None = None  # None: local only when no credentials are found
    host: str | None = None
    project: str | None = None
    project_dir: Path | None = None
    readonly: bool = False
    heal: bool = True
    poll_s: float = 2.0  # 0 disables polling (tests feed snapshots themselves)
    keymap: dict[str, str] = field(default_factory=dict)


def suspension_change(before: Desired | None, now: Desired | None) -> str | None:
    """The event for a cluster that was suspended (by its head's idle check, by hand) or
    resumed since the last poll, from cluster.json's state; None when it did not change."""
    if before is None or now is None or before.state == now.state:
        return None
    if now.state == "suspended":
        info = now.suspension
        why = f": {info.reason}" if info is not None and info.reason else ""
        who = " by its head" if info is not None and info.by == "head" else ""
        return f"suspended{who}{why}; its applications stop (z resumes it)"
    if before.state == "suspended" and now.state == "active":
        return "resumed: its applications start again"
    return None


class RaycaiApp(App[None]):
    CSS_PATH = "raycai.tcss"
    TITLE = "raycai"
    BINDINGS = [
        Binding(
            "question_mark",
            "help",
            "Help",
            id="app.help",
            tooltip="Every key of this screen, with its binding id",
        ),
        Binding(
            "h",
            "toggle_healing",
            "Healing",
            id="app.toggle_healing",
            tooltip="Turn automatic healing (restart/replace failed nodes) on or off",
        ),
    ]

    def __init__(self, settings: Settings | None = None, *, target: Target | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.readonly = self.settings.readonly
        self.healing = self.settings.heal and not self.readonly
        self.services: Services | None = None
        self.snapshot: Snapshot | None = None
        self.operations = Operations(self)  # create, scale, restart, delete, heal
        self.events = EventStore()
        # The cluster list: one CML call per poll, whatever the number of clusters and apps.
        self.poller: Poller[Snapshot] = Poller(
            self,
            self._fetch_snapshot,
            self._snapshot_arrived,
            name="poll clusters",
            group="poll",
            interval=self.settings.poll_s or 2.0,
            on_status=lambda backoff: self.broadcast(PollStatus, backoff),
        )
        self.joining: dict[str, str] = {}  # new clusters watched until ready -> progress line
        self._target = target
        self._heal_planner: HealPlanner | None = None
        self.sub_title = "connecting…"
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)

    @property
    def polling_enabled(self) -> bool:
        return self.settings.poll_s > 0

    @property
    def polls(self) -> int:
        """Successful cluster-list polls (each is one CML API call)."""
        return self.poller.polls

    @property
    def poll_backoff(self) -> Backoff:
        return self.poller.backoff

    def on_mount(self) -> None:
        # Quitting never waits for a thread stuck in a blocking read (see raycai_core.aio).
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
        self.push_screen(ClustersScreen())
        if self.polling_enabled:
            self.call_after_refresh(self.connect)

    # -- shared state, for the screens ----------------------------------------------------

    def broadcast(self, make: Callable[..., Message], *args: object) -> None:
        """Post a fresh message to every raycai screen (they do not bubble)."""
        for screen in self.screen_stack:
            if isinstance(screen, RaycaiScreen):
                screen.post_message(make(*args))

    def add_event(self, event: Event, *, notify: bool = False) -> None:
        self.events.add(event)
        self.broadcast(ClusterEvent, event)
        if notify:
            severity = "error" if event.level == "error" else "warning"
            self.notify(
                event.text, title=event.cluster, severity=severity, timeout=10, markup=False
            )

    def show_connected(self, workspace: str, project: str) -> None:
        self.sub_title = f"{workspace} · project {project}"
        self.broadcast(Connected, workspace, project)

    # -- connecting -------------------------------------------------------------------------

    @work(group="connect", exclusive=True, exit_on_error=False)
    async def connect(self) -> None:
        settings = self.settings
        try:
            target = self._target
            if target is None:
                from raycai_core.target import resolve_target  # cheap; may start the workspace

                target = await asyncio.to_thread(
                    resolve_target,
                    host=settings.host,
                    project=settings.project,
                    project_dir=settings.project_dir,
                    local=settings.local,
                    prefer_session=True,  # in a CML session, its own project comes first
                    remote=False,  # the TUI works on the project's files on disk
                )
            # httpx, pydantic and raycai_core.cluster load off the UI thread.
            services_module = await asyncio.to_thread(
                importlib.import_module, "raycai_tui.services"
            )
            healing_module = await asyncio.to_thread(importlib.import_module, "raycai_tui.healing")
            services = await services_module.Services.open(target)
        except Exception as exc:  # TargetError, a failed local start: shown, never fatal
            self.sub_title = "not connected"
            self.broadcast(ConnectFailed, describe_error(exc))
            return
        self.services = services
        self._heal_planner = healing_module.HealPlanner()
        self.show_connected(services.workspace_label, services.project_label)
        self.refresh_bindings()
        if self.polling_enabled:
            self.poller.start()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Errors of the app's own workers (screens show theirs); the app keeps running."""
        if event.state is WorkerState.ERROR and event.worker.node is self:
            self.notify(
                str(event.worker.error),
                title=event.worker.name,
                severity="error",
                timeout=15,
                markup=False,
            )

    async def on_unmount(self) -> None:
        if self.services is not None:
            await self.services.aclose()

    # -- the cluster-list poll (raycai_tui.poller) ------------------------------------------

    def poll_soon(self) -> None:
        """Poll again shortly (after an operation), without overlapping a running poll."""
        self.poller.poll_soon()

    async def _fetch_snapshot(self) -> Snapshot:
        if self.services is None:
            raise RuntimeError("not connected to a workspace")
        return await self.services.snapshot()

    def _snapshot_arrived(self, snapshot: Snapshot) -> None:
        previous, self.snapshot = self.snapshot, snapshot
        self.broadcast(ClustersPolled, snapshot)
        if previous is not None:
            self._note_recoveries(previous, snapshot)
        self._heal_if_needed(snapshot)

    def _note_recoveries(self, previous: Snapshot, snapshot: Snapshot) -> None:
        """Events for what recovered by itself since the last poll (Ray restarted in place,
        a platform restart, the Serve config re-applied), from the launchers' records."""
        from raycai_core.cluster.records import recovery_notes  # the app starts without it

        for summary in snapshot.summaries:
            before = previous.summary(summary.name)
            if before is None:
                continue
            for _node, text, level in recovery_notes(before.records, summary.records):
                self.add_event(Event(time.time(), summary.name, text, level), notify=True)
            change = suspension_change(before.desired, summary.desired)
            if change:
                self.add_event(Event(time.time(), summary.name, change, "info"), notify=True)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Hand a snapshot to the screens, as a poll does (tests call this with fixed data)."""
        self._snapshot_arrived(snapshot)
        self.broadcast(PollStatus, self.poll_backoff)

    # -- new clusters, watched until ready ------------------------------------------------

    def watch_ready(self, name: str) -> None:
        """Watch a new cluster until it is ready (the core's one watch, as `raycai up --wait`),
        on the App: leaving the create form does not stop it. Each tick goes to the screens
        (the form's steps, the clusters list's status line); the end is notified."""
        if name in self.joining or self.services is None:
            return
        self.joining[name] = "nodes joined Ray: …"
        self.run_worker(
            self._watch_ready(name),
            name=f"watch {name} until ready",
            group=f"ready {name}",
            exclusive=True,
            exit_on_error=False,
        )

    async def _watch_ready(self, name: str) -> None:
        from raycai_core.cluster.readiness import progress_line, watch_until_ready

        services = self.services
        assert services is not None

        async def members() -> list[ClusterApp]:  # this tick's poll: no extra CML call
            return self.snapshot.members.get(name, []) if self.snapshot else []

        views = watch_until_ready(
            services.observer, name, interval=max(0.5, self.settings.poll_s or 2.0), members=members
        )
        try:
            async with contextlib.aclosing(views):
                async for view in views:
                    if view.desired is None or view.desired.state == "deleting":
                        return  # deleted meanwhile: nothing to wait for
                    line = progress_line(view)
                    self.joining[name] = line
                    self.broadcast(ReadinessChanged, name, view, line)
                    if view.ready:
                        self.notify(f"{name}: every node joined Ray", title="Cluster ready")
        finally:
            self.joining.pop(name, None)

    # -- healing ------------------------------------------------------------------------------

    def _heal_if_needed(self, snapshot: Snapshot) -> None:
        """Heal the clusters that need it, each as an operation (never two on one cluster)."""
        planner = self._heal_planner
        if not self.healing or planner is None or self.services is None:
            return
        now = time.time()
        busy = {op.cluster for op in self.operations.running()}
        for name in planner.due(snapshot.summaries, busy, now):
            planner.attempted(name, now)
            self.operations.heal(snapshot, name)

    def action_toggle_healing(self) -> None:
        self.healing = not self.healing
        self.notify(f"healing {'on' if self.healing else 'off'}")
        self.broadcast(HealingToggled, self.healing)
        if self.healing and self.snapshot is not None:
            self._heal_if_needed(self.snapshot)

    # -- keys ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_healing":
            return not self.readonly and self.services is not None
        if action == "help":
            return isinstance(self.screen, RaycaiScreen)
        return True

    async def action_quit(self) -> None:
        """Quit; while operations run, first say what stays and ask."""
        running = self.operations.running()
        if not running or isinstance(self.screen, QuitScreen):  # asked already: quit
            self.exit()
            return
        question = (
            f"{len(running)} operation(s) still running. Quitting stops them where they are; "
            "nothing is undone, and rerunning converges:"
        )
        items = [f"{op.label} — {op.remains}" for op in running]

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(QuitScreen("Quit raycai-tui?", question, items, "Quit"), answered)

    def on_key(self, event: events.Key) -> None:
        """Keys typed at once (`enter` then `+`) reach the app together. Textual routes the
        second to the screen that is current then, and runs the first one's action (open a
        cluster) only afterwards, so the `+` would fall on the list being left. A key that no
        binding of the current screen takes is tried once more after the pending actions
        ran, on whatever screen is current then; never on a dialog, whose answer must be a
        key pressed while it is shown."""
        if getattr(event, "replayed", False) or event.key in self.screen.active_bindings:
            return
        self.call_after_refresh(self._replay_key, event.key, event.character)

    def _replay_key(self, key: str, character: str | None) -> None:
        if isinstance(self.screen, ModalScreen):
            return
        again = events.Key(key, character)  # a plain Key, so that Textual routes it as one
        again.replayed = True  # type: ignore[attr-defined]
        self.post_message(again)

    def action_help(self) -> None:
        from raycai_tui.screens.help import HelpScreen

        screen = self.screen
        title = screen.help_title if isinstance(screen, RaycaiScreen) else "raycai"
        self.push_screen(HelpScreen(screen, title))


class QuitScreen(ConfirmScreen):
    """The question asked by quit while operations run."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--local/--no-local",
    default=None,
    help="Use the embedded local workspace (default: when no credentials are set).",
)
@click.option("--host", help="CML workspace URL (else CML_HOST / CDSW_DOMAIN).")
@click.option("--project", help="Project id (else CML_PROJECT_ID / CDSW_PROJECT_ID).")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project's files (default: /home/cdsw in a session; RAYCAI_PROJECT_DIR).",
)
@click.option(
    "--dir",
    "launcher_dir",
    metavar="FOLDER",
    help="The launcher folder at the project root (default .raycai; RAYCAI_DIR).",
)
@click.option("--readonly", is_flag=True, help="Watch only: hide every action that changes things.")
@click.option("--no-heal", is_flag=True, help="Do not restart or replace failed nodes.")
@click.option(
    "--keymap",
    "keymap_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of binding id = keys (press ? to see the ids).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
def main(
    local: bool | None,
    host: str | None,
    project: str | None,
    project_dir: Path | None,
    launcher_dir: str | None,
    readonly: bool,
    no_heal: bool,
    keymap_file: Path | None,
    poll: float,
) -> None:
    """A keyboard-driven dashboard for Ray clusters on Cloudera AI (CML) applications."""
    from raycai_core.cluster.layout import LauncherFolderError, use_launcher_folder

    try:
        use_launcher_folder(launcher_dir)  # every cluster path of this process uses it
    except LauncherFolderError as exc:
        raise click.BadParameter(str(exc), param_hint="--dir / RAYCAI_DIR") from None
    keymap: dict[str, str] = {}
    if keymap_file is not None:
        from raycai_tui.keymap import KeymapError, load_keymap

        try:
            keymap = load_keymap(keymap_file)
        except KeymapError as exc:
            raise click.BadParameter(str(exc), param_hint="--keymap") from None
    settings = Settings(
        local=local,
        host=host,
        project=project,
        project_dir=project_dir,
        readonly=readonly,
        heal=not no_heal,
        poll_s=poll,
        keymap=keymap,
    )
    RaycaiApp(settings).run()


if __name__ == "__main__":
    main()
