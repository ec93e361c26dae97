"""Ray Serve on one cluster: applications (status, route, URL) and their deployments (status,
replicas by state, and under an unhealthy one its message). One dashboard request per poll,
by the screen's Poller (raycai_tui.poller), which backs off while it fails; the last answer
stays. `d` deploys a Serve config file of the project (the path checked as it is typed), `x`
deletes the selected application after asking; both are named workers, as the jobs view's
submit and stop are (a deploy is one PUT), whose failures are notified, never fatal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from raycai_tui.format import describe_error
from raycai_tui.screens.base import PolledScreen
from raycai_tui.widgets.header import RaycaiHeader
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row
from raycai_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from raycai_core.ray.models import ServeApplication, ServeDeployment, ServeStatus

APP_STATUS_STYLES = {
    "RUNNING": "green",
    "DEPLOYING": "yellow",
    "NOT_STARTED": "dim",
    "DELETING": "yellow",
    "UNHEALTHY": "bold red",
    "DEPLOY_FAILED": "bold red",
}
DEPLOYMENT_STATUS_STYLES = {
    "HEALTHY": "green",
    "UPDATING": "yellow",
    "UPSCALING": "yellow",
    "DOWNSCALING": "yellow",
    "UNHEALTHY": "bold red",
    "DEPLOY_FAILED": "bold red",
}


def one_line(text: str, limit: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ServeAppsTable(KeyedTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("name", "APPLICATION", 20),
        Column("status", "STATUS", 13),
        Column("route", "ROUTE", 16),
        Column("url", "URL (inside the project)", 40),
        Column("message", "MESSAGE", 60),
    )


class DeploymentsTable(KeyedTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("name", "APPLICATION / DEPLOYMENT", 32),
        Column("status", "STATUS", 13),
        Column("replicas", "REPLICAS", 28),
        Column("message", "MESSAGE", 60),
    )


MESSAGE_LINES = 4  # an unhealthy deployment's message: its last lines (a traceback's end)


def route_url(base: str, app: ServeApplication) -> str:
    """The route through the head's proxy (`base` is http://<head ip>:<head app port>)."""
    from raycai_core.work.serve_routes import serve_path

    return base + serve_path(app.route_prefix) if app.route_prefix is not None else "-"


def app_rows(state: ServeStatus, base: str) -> list[Row]:
    return [
        (
            app.name,
            (
                app.name,
                Text(app.status, style=APP_STATUS_STYLES.get(app.status, "")),
                app.route_prefix or "-",
                route_url(base, app),
                "" if app.healthy else one_line(app.message),
            ),
        )
        for app in state.applications
    ]


def message_lines(d: ServeDeployment) -> list[str]:
    lines = [line.strip() for line in d.message.strip().splitlines() if line.strip()]
    return [one_line(line, 160) for line in lines[-MESSAGE_LINES:]]


def deployment_rows(state: ServeStatus) -> list[Row]:
    """A row per deployment; under an unhealthy one, a row per line of its message."""
    rows: list[Row] = []
    for app in state.applications:
        for d in app.deployments:
            key = f"{app.name}/{d.name}"
            rows.append(
                (
                    key,
                    (
                        f"{app.name} / {d.name}",
                        Text(d.status, style=DEPLOYMENT_STATUS_STYLES.get(d.status, "")),
                        d.replicas_text(),
                        "" if d.healthy else one_line(d.message),
                    ),
                )
            )
            if d.healthy:
                continue
            for index, line in enumerate(message_lines(d)):
                marker = Text("  └ message" if index == 0 else "", style="dim")
                rows.append((f"{key}#{index}", (marker, "", "", Text(line, style="red"))))
    return rows


class ServeScreen(PolledScreen):
    """`ServeScreen(cluster, project_dir)`; the app's poll interval unless `poll_interval`."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="serve.back", tooltip="Back to the cluster"),
        Binding("r", "refresh", "Refresh", id="serve.refresh", tooltip="Poll Serve now"),
        Binding("d", "deploy", "Deploy", id="serve.deploy", tooltip="Deploy a Serve config file"),
        Binding(
            "x",
            "delete",
            "Delete",
            id="serve.delete",
            tooltip="Delete the selected application (asks first)",
        ),
        Binding("q", "app.quit", "Quit", id="serve.quit", tooltip="Quit raycai-tui"),
    ]
    MUTATING = frozenset({"deploy", "delete"})
    SOURCE = "Serve"
    STATUS_ID = "serve-status"
    POLL_GROUP = "serve.poll"
    DEFAULT_CSS = """
    ServeScreen #serve-title { height: 1; padding: 0 1; background: $panel; }
    ServeScreen #serve-note { height: auto; padding: 0 1; }
    ServeScreen ServeAppsTable { height: 1fr; }
    ServeScreen DeploymentsTable { height: 1fr; }
    ServeScreen #serve-status { height: auto; padding: 0 1; }
    """

    def __init__(
        self, cluster: str, project_dir: Path, *, poll_interval: float | None = None
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self.cluster = cluster
        self.project_dir = Path(project_dir)
        self.help_title = f"Serve on {cluster}"
        self.state: ServeStatus | None = None
        self.note = "waiting for the first answer…"
        from raycai_core.work.session import ClusterWork  # httpx loads after the first frame

        self.work = ClusterWork(Path(project_dir), cluster)

    def compose(self) -> ComposeResult:
        yield RaycaiHeader()
        yield Static(Text(f"Serve on {self.cluster}", style="bold"), id="serve-title")
        yield Static(self.note, id="serve-note")
        yield ServeAppsTable(id="serve-apps")
        yield DeploymentsTable(id="serve-deployments")
        yield StatusLine(id="serve-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ServeAppsTable).focus()
        self.start_polling()

    async def on_unmount(self) -> None:
        self.stop_polling()
        await self.work.aclose()

    async def fetch(self) -> tuple[ServeStatus, str]:
        """One dashboard request; a failure (access, dashboard, an answer we cannot read) is
        the poller's, and a cluster without Serve installed also says so in the note."""
        from raycai_core.ray.errors import ServeNotInstalled

        try:
            client = await self.work.client()
            state = await client.serve_status()
        except ServeNotInstalled as exc:
            self.set_note(describe_error(exc), style="bold red")
            raise
        return state, await asyncio.to_thread(self._proxy_base)

    def _proxy_base(self) -> str:
        from raycai_core.work.serve_routes import head_app_port

        access = self.work.access
        return f"http://{access.head.ip}:{head_app_port(access)}" if access else "?"

    def show(self, answer: tuple[ServeStatus, str]) -> None:
        state, base = answer
        self.state = state
        if not state.applications:
            self.set_note(f"Serve is not running on {self.cluster} (no applications).")
        else:
            healthy = sum(app.healthy for app in state.applications)
            self.set_note(
                f"{len(state.applications)} application(s), {healthy} RUNNING; routes through "
                f"the head's proxy under /serve, with the Ray token (`raycai serve status "
                f"{self.cluster}` prints a curl line)"
            )
        self.query_one(ServeAppsTable).reconcile(app_rows(state, base))
        self.query_one(DeploymentsTable).reconcile(deployment_rows(state))

    def set_note(self, text: str, style: str = "") -> None:
        self.note = text
        self.query_one("#serve-note", Static).update(Text(text, style=style))

    def action_back(self) -> None:
        self.dismiss()

    def action_refresh(self) -> None:
        self.poll_now()

    # -- deploy and delete -------------------------------------------------------------------

    def action_deploy(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.deploy(path)

        self.app.push_screen(DeployServeScreen(self.cluster, self.project_dir), chosen)

    @work(group="serve.deploy", exit_on_error=False)
    async def deploy(self, path: Path) -> None:
        from raycai_core.work import serve_deploy

        try:
            client = await self.work.client()
            assert self.work.access is not None
            prepared = await serve_deploy.deploy(client, self.work.access, path)
        except Exception as exc:
            self.notify(
                error_text(exc), title="Deploy refused", severity="error", markup=False, timeout=20
            )
            return
        lines = [*prepared.notes, f"Ray accepted {', '.join(prepared.names)}: deploying"]
        self.notify("\n".join(lines), title=f"Serve on {self.cluster}", markup=False)
        self.poll_now()

    def action_delete(self) -> None:
        from raycai_tui.screens.confirm import ConfirmScreen

        name = self.query_one(ServeAppsTable).selected_key
        if name is None:
            self.notify("No application selected.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(name)

        question = (
            f"Delete Serve application {name} on {self.cluster}? Its replicas stop; the other "
            "applications keep running."
        )
        self.app.push_screen(ConfirmScreen(f"Delete {name}", question, [name]), answered)

    @work(group="serve.delete", exit_on_error=False)
    async def delete(self, name: str) -> None:
        from raycai_core.work import serve_deploy

        try:
            client = await self.work.client()
            assert self.work.access is not None
            await serve_deploy.delete_app(client, self.work.access, name)
        except Exception as exc:
            self.notify(
                error_text(exc), title="Delete failed", severity="error", markup=False, timeout=20
            )
            return
        self.notify(f"{name}: deleted", title=f"Serve on {self.cluster}")
        self.poll_now()


def error_text(error: BaseException, lines: int = 12) -> str:
    """Ray's refusal as it wrote it (pydantic's lines), at most `lines` of it."""
    text = str(error).strip()
    if not text:
        return describe_error(error)
    kept = text.splitlines()
    return "\n".join(kept[:lines] + (["…"] if len(kept) > lines else []))


# -- the deploy dialog ---------------------------------------------------------------------------


def check_config_path(text: str, project_dir: Path) -> tuple[Path | None, str]:
    """(the file, what it deploys) when `text` names a Serve config raycai can send, else
    (None, why not). Relative to the project directory. Reads the file."""
    from raycai_core.work.serve_config import (
        ServeConfigError,
        app_names,
        load_serve_config,
        rewrite_paths,
    )

    if not text.strip():
        return None, "a Serve config file of the project (YAML, as `serve build` writes it)"
    path = Path(text.strip()).expanduser()
    path = path if path.is_absolute() else project_dir / path
    if not path.exists():
        return None, f"{path}: no such file"
    if not path.is_file():
        return None, f"{path} is not a file"
    try:
        config = load_serve_config(path)
        rewrite_paths(config, path.resolve().parent, project_dir)
    except ServeConfigError as exc:
        return None, str(exc)
    return path, f"deploys {', '.join(app_names(config))} (same names are replaced)"


class DeployServeScreen(ModalScreen["Path | None"]):
    """A config file's path, checked as it is typed; enter or ctrl+s deploys it."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="serve.form.cancel"),
        Binding("ctrl+s", "submit", "Deploy", id="serve.form.deploy"),
    ]
    DEFAULT_CSS = """
    DeployServeScreen { align: center middle; }
    DeployServeScreen > Vertical { width: 90; height: auto; border: round $accent; padding: 0 1; }
    DeployServeScreen #config-check { height: auto; }
    DeployServeScreen .problem { color: $error; }
    DeployServeScreen #form-buttons { height: auto; align: right middle; }
    """

    def __init__(self, cluster: str, project_dir: Path) -> None:
        super().__init__()
        self.cluster = cluster
        self.project_dir = Path(project_dir)
        self.path: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Deploy a Serve config on {self.cluster}", id="dialog-title")
            yield Label("Config file (relative to the project directory)")
            yield Input(placeholder="serve_config.yaml", id="config-path")
            yield Static("", id="config-check", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Deploy", id="deploy", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#config-path", Input).focus()
        self._recheck("")

    def _recheck(self, text: str) -> None:
        self.path, message = check_config_path(text, self.project_dir)
        check = self.query_one("#config-check", Static)
        check.update(Text(message))
        check.set_class(self.path is None and bool(text.strip()), "problem")
        self.query_one("#deploy", Button).disabled = self.path is None

    @on(Input.Changed, "#config-path")
    def _changed(self, event: Input.Changed) -> None:
        self._recheck(event.value)

    @on(Input.Submitted, "#config-path")
    def _submitted(self) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "deploy":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        self._recheck(self.query_one("#config-path", Input).value)
        if self.path is None:
            self.notify("Choose a Serve config file first.", severity="warning")
            return
        self.dismiss(self.path)

    def action_cancel(self) -> None:
        self.dismiss(None)
