"""Ray Serve on one cluster: applications (status, route, URL) and their deployments (status,
replicas by state, the message when unhealthy). One dashboard request per poll, by the
screen's Poller (raycai_tui.poller), which backs off while it fails; the last answer stays."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from raycai_tui.format import describe_error
from raycai_tui.screens.base import PolledScreen
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row
from raycai_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from raycai_core.ray.models import ServeStatus

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
        Column("url", "URL (inside the project)", 34),
        Column("message", "MESSAGE", 60),
    )


class DeploymentsTable(KeyedTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("name", "APPLICATION / DEPLOYMENT", 32),
        Column("status", "STATUS", 13),
        Column("replicas", "REPLICAS", 28),
        Column("message", "MESSAGE", 60),
    )


def app_rows(state: ServeStatus, head_ip: str) -> list[Row]:
    return [
        (
            app.name,
            (
                app.name,
                Text(app.status, style=APP_STATUS_STYLES.get(app.status, "")),
                app.route_prefix or "-",
                state.route_url(head_ip, app) or "-",
                "" if app.healthy else one_line(app.message),
            ),
        )
        for app in state.applications
    ]


def deployment_rows(state: ServeStatus) -> list[Row]:
    return [
        (
            f"{app.name}/{d.name}",
            (
                f"{app.name} / {d.name}",
                Text(d.status, style=DEPLOYMENT_STATUS_STYLES.get(d.status, "")),
                d.replicas_text(),
                "" if d.healthy else one_line(d.message),
            ),
        )
        for app in state.applications
        for d in app.deployments
    ]


class ServeScreen(PolledScreen):
    """`ServeScreen(cluster, project_dir)`; the app's poll interval unless `poll_interval`."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="serve.back", tooltip="Back to the cluster"),
        Binding("r", "refresh", "Refresh", id="serve.refresh", tooltip="Poll Serve now"),
        Binding("q", "app.quit", "Quit", id="serve.quit", tooltip="Quit raycai-tui"),
    ]
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
        self.help_title = f"Serve on {cluster}"
        self.state: ServeStatus | None = None
        self.note = "waiting for the first answer…"
        from raycai_core.work.session import ClusterWork  # httpx loads after the first frame

        self.work = ClusterWork(Path(project_dir), cluster)

    def compose(self) -> ComposeResult:
        yield Header()
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
        access = self.work.access
        return state, access.head.ip if access else "?"

    def show(self, answer: tuple[ServeStatus, str]) -> None:
        state, head_ip = answer
        self.state = state
        if not state.applications:
            self.set_note(f"Serve is not running on {self.cluster} (no applications).")
        else:
            healthy = sum(app.healthy for app in state.applications)
            self.set_note(
                f"{len(state.applications)} application(s), {healthy} RUNNING; routes on the "
                f"head's proxy, port {state.http_port}"
            )
        self.query_one(ServeAppsTable).reconcile(app_rows(state, head_ip))
        self.query_one(DeploymentsTable).reconcile(deployment_rows(state))

    def set_note(self, text: str, style: str = "") -> None:
        self.note = text
        self.query_one("#serve-note", Static).update(Text(text, style=style))

    def action_back(self) -> None:
        self.dismiss()

    def action_refresh(self) -> None:
        self.poll_now()
