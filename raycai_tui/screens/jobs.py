"""Ray Jobs of one cluster: the list (one dashboard request per poll), a job's logs, submit, stop.

The list comes from the screen's Poller (raycai_tui.poller): one poll at a time, backing off
while the dashboard fails, paused while another screen covers this one; a failure is shown in
the status line and the last list stays. It is Ray's list merged with raycai's ledger
(raycai_core.work.tracked_jobs): a job a restarted head forgot shows LOST, in red.
Submitting and stopping are named workers; their failures are notified, never fatal.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from raycai_tui.format import age, describe_error
from raycai_tui.screens.base import PolledScreen, RaycaiScreen
from raycai_tui.widgets.header import RaycaiHeader
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row
from raycai_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient
    from raycai_core.ray.models import JobInfo, JobRequest
    from raycai_core.work.session import ClusterWork

JOB_STATUS_STYLES = {
    "RUNNING": "bold cyan",
    "PENDING": "yellow",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "STOPPED": "magenta",
    "UNKNOWN": "dim",
    "LOST": "bold red",  # raycai's: a job a head that restarted without its state forgot
}


def one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def job_row(job: JobInfo, now: float) -> Row:
    start = time.strftime("%H:%M:%S", time.localtime(job.start_time)) if job.start_time else "-"
    return (
        job.id,
        (
            job.id,
            Text(job.status, style=JOB_STATUS_STYLES.get(job.status, "")),
            one_line(job.entrypoint, 40),
            start,
            age(job.duration(now)),
            one_line(job.message, 80),
        ),
    )


class JobsTable(KeyedTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("id", "ID", 28),
        Column("status", "STATUS", 10),
        Column("entrypoint", "ENTRYPOINT", 40),
        Column("start", "START", 8),
        Column("duration", "DURATION", 8),
        Column("message", "MESSAGE", 80),
    )


def open_work(project_dir: Path, cluster: str) -> ClusterWork:
    from raycai_core.work.session import ClusterWork

    return ClusterWork(project_dir, cluster)


class JobsScreen(PolledScreen):
    """`JobsScreen(cluster, project_dir)`; the app's poll interval unless `poll_interval`."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="jobs.back", tooltip="Back to the cluster"),
        Binding("enter", "logs", "Logs", id="jobs.logs", tooltip="The selected job's logs"),
        Binding("n", "submit", "Submit", id="jobs.submit", tooltip="Submit a new job"),
        Binding("x", "stop", "Stop", id="jobs.stop", tooltip="Stop the selected job (asks first)"),
        Binding("d", "toggle_drivers", "Drivers", id="jobs.drivers", tooltip="Show drivers too"),
        Binding("r", "refresh", "Refresh", id="jobs.refresh", tooltip="Poll the jobs now"),
        Binding("q", "app.quit", "Quit", id="jobs.quit", tooltip="Quit raycai-tui"),
    ]
    MUTATING = frozenset({"submit", "stop"})
    SOURCE = "Ray jobs"
    STATUS_ID = "jobs-status"
    POLL_GROUP = "jobs.poll"
    DEFAULT_CSS = """
    JobsScreen #jobs-title { height: 1; padding: 0 1; background: $panel; }
    JobsScreen JobsTable { height: 1fr; }
    JobsScreen #jobs-status { height: auto; padding: 0 1; }
    """

    def __init__(
        self, cluster: str, project_dir: Path, *, poll_interval: float | None = None
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self.cluster = cluster
        self.project_dir = Path(project_dir)
        self.help_title = f"jobs of {cluster}"
        self.jobs: list[JobInfo] = []
        self.show_drivers = False
        self.work = open_work(self.project_dir, cluster)

    def compose(self) -> ComposeResult:
        yield RaycaiHeader()
        yield Static(Text(f"Jobs of {self.cluster}", style="bold"), id="jobs-title")
        yield JobsTable(id="jobs")
        yield StatusLine(id="jobs-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(JobsTable).focus()
        self.start_polling()

    async def on_unmount(self) -> None:
        self.stop_polling()
        await self.work.aclose()

    # -- polling ---------------------------------------------------------------------------

    async def fetch(self) -> list[JobInfo]:
        """One dashboard request (a failure: access, dashboard, an answer we cannot read),
        recorded in and merged with the cluster's ledger (written only when it changed)."""
        from raycai_core.work import tracked_jobs

        client = await self.work.client()
        assert self.work.access is not None  # set by client()
        return (await tracked_jobs.list_jobs(client, self.work.access)).jobs

    def show(self, answer: list[JobInfo]) -> None:
        self.jobs = answer
        self.show_jobs()

    def show_jobs(self) -> None:
        shown = [j for j in self.jobs if self.show_drivers or j.is_submission]
        now = time.time()
        self.query_one(JobsTable).reconcile([job_row(j, now) for j in shown])
        summary = f"Jobs of {self.cluster}  ·  {len(shown)} shown"
        if not shown and not self.jobs:
            summary += "  ·  none yet: n submits one"
        self.query_one("#jobs-title", Static).update(Text(summary, style="bold"))

    @property
    def selected(self) -> JobInfo | None:
        key = self.query_one(JobsTable).selected_key
        return next((j for j in self.jobs if j.id == key), None)

    # -- actions ---------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_refresh(self) -> None:
        self.poll_now()

    def action_toggle_drivers(self) -> None:
        self.show_drivers = not self.show_drivers
        self.show_jobs()

    @on(JobsTable.RowSelected)
    def _row_chosen(self, event: JobsTable.RowSelected) -> None:
        event.stop()  # the table takes enter: open the logs as the binding would
        self.action_logs()

    def action_logs(self) -> None:
        job = self.selected
        if job is None:
            self.notify("No job selected.", severity="warning")
            return
        if not job.is_submission:
            self.notify("Ray keeps logs for submitted jobs only.", severity="warning")
            return
        if job.status == "LOST":
            self.notify(f"{job.id} is LOST: its logs went with the head.", severity="warning")
            return
        self.app.push_screen(JobLogsScreen(self.cluster, job.id, self.work, self.project_dir))

    def action_submit(self) -> None:
        def chosen(request: JobDraft | None) -> None:
            if request is not None:
                self.submit(request)

        self.app.push_screen(SubmitJobScreen(self.cluster, self.project_dir), chosen)

    @work(group="jobs.submit", exit_on_error=False)
    async def submit(self, draft: JobDraft) -> None:
        from dataclasses import replace

        from raycai_core.work import tracked_jobs
        from raycai_core.work.packages import build_package

        try:
            client = await self.work.client()
            assert self.work.access is not None  # set by client()
            request = draft.request
            if draft.working_dir is not None:
                package = await self._run_off_thread(build_package, draft.working_dir)
                await client.ensure_package(package)
                request = replace(request, working_dir_uri=package.uri)
            submitted = await tracked_jobs.submit(client, self.work.access, request)
        except Exception as exc:
            self.notify(describe_error(exc), title="Submit failed", severity="error", markup=False)
            return
        self.notify(f"Submitted {submitted.job_id}", title=self.cluster)
        if submitted.unrecorded:
            self.notify(
                submitted.unrecorded,
                title="Not recorded in jobs.json",
                severity="warning",
                markup=False,
            )
        self.poll_now()

    @staticmethod
    async def _run_off_thread(function, *args):  # type: ignore[no-untyped-def]
        import asyncio

        return await asyncio.to_thread(function, *args)

    def action_stop(self) -> None:
        from raycai_tui.screens.confirm import ConfirmScreen

        job = self.selected
        if job is None:
            self.notify("No job selected.", severity="warning")
            return
        if job.terminal or not job.is_submission:
            self.notify(f"{job.id} is {job.status}: nothing to stop.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop(job.id)

        question = f"Stop job {job.id}? Ray sends its entrypoint SIGTERM, then SIGKILL."
        self.app.push_screen(
            ConfirmScreen(f"Stop {job.id}", question, [job.entrypoint], yes_label="Stop"),
            answered,
        )

    @work(group="jobs.stop", exit_on_error=False)
    async def stop(self, job_id: str) -> None:
        try:
            client = await self.work.client()
            stopped = await client.stop_job(job_id)
        except Exception as exc:
            self.notify(describe_error(exc), title="Stop failed", severity="error", markup=False)
            return
        self.notify(f"{job_id}: {'stop requested' if stopped else 'had already ended'}")
        self.poll_now()


# -- submit form -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobDraft:
    request: JobRequest
    working_dir: Path | None = None


@dataclass
class FormCheck:
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


FIELDS = (
    ("entrypoint", "Entrypoint (runs from the project root)", "python train.py --epochs 3"),
    ("working_dir", "Working dir to upload (empty: none)", "path/to/dir"),
    ("env", "Environment (KEY=VALUE, space separated)", "A=1 B='two words'"),
    ("cpus", "CPUs for the entrypoint", "0"),
    ("gpus", "GPUs for the entrypoint", "0"),
    ("memory", "Memory for the entrypoint, GB", "0"),
)


def check_form(values: dict[str, str], project_dir: Path) -> tuple[FormCheck, JobDraft | None]:
    """Every field's problem, and the draft when there is none. Pure but for a stat."""
    from raycai_core.ray.models import JobRequest
    from raycai_core.work.jobs import (
        JobRequestError,
        check_entrypoint,
        parse_amount,
        parse_env,
    )

    check = FormCheck()
    parsed: dict[str, object] = {}

    def attempt(name: str, parse) -> None:  # type: ignore[no-untyped-def]
        try:
            parsed[name] = parse(values.get(name, ""))
        except (JobRequestError, ValueError) as exc:
            check.errors[name] = str(exc)

    attempt("entrypoint", check_entrypoint)
    attempt("env", lambda text: parse_env(shlex.split(text)))
    for name in ("cpus", "gpus", "memory"):
        attempt(name, lambda text, name=name: parse_amount(text, name))
    directory = values.get("working_dir", "").strip()
    working_dir = None
    if directory:
        working_dir = Path(directory).expanduser()
        if not working_dir.is_absolute():
            working_dir = project_dir / working_dir
        if not working_dir.is_dir():
            check.errors["working_dir"] = f"working dir: {working_dir} is not a directory"
    if not check.ok:
        return check, None
    request = JobRequest(
        entrypoint=str(parsed["entrypoint"]),
        env=parsed["env"],  # type: ignore[arg-type]
        cpus=parsed["cpus"],  # type: ignore[arg-type]
        gpus=parsed["gpus"],  # type: ignore[arg-type]
        memory_gb=parsed["memory"],  # type: ignore[arg-type]
    )
    return check, JobDraft(request, working_dir)


class SubmitJobScreen(ModalScreen["JobDraft | None"]):
    """The job form; each field is checked as it is typed, ctrl+s submits."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="jobs.form.cancel"),
        Binding("ctrl+s", "submit", "Submit", id="jobs.form.submit"),
    ]
    DEFAULT_CSS = """
    SubmitJobScreen { align: center middle; }
    SubmitJobScreen > Vertical { width: 80; height: auto; border: round $accent; padding: 0 1; }
    SubmitJobScreen .field-error { color: $error; height: auto; }
    SubmitJobScreen Input { margin: 0; }
    SubmitJobScreen #form-buttons { height: auto; align: right middle; }
    """

    def __init__(self, cluster: str, project_dir: Path) -> None:
        super().__init__()
        self.cluster = cluster
        self.project_dir = project_dir
        self.check = FormCheck()
        self.draft: JobDraft | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Submit a job to {self.cluster}", id="dialog-title")
            for name, label, placeholder in FIELDS:
                yield Label(label)
                yield Input(placeholder=placeholder, id=f"field-{name}")
                yield Static("", id=f"error-{name}", classes="field-error")
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Submit", id="submit", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#field-entrypoint", Input).focus()
        self._recheck(touched=set())

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#field-{name}", Input).value for name, _, _ in FIELDS}

    def _recheck(self, touched: set[str] | None = None) -> None:
        self.check, self.draft = check_form(self.values(), self.project_dir)
        for name, _, _ in FIELDS:
            shown = touched is None or name in touched
            error = self.check.errors.get(name, "") if shown else ""
            self.query_one(f"#error-{name}", Static).update(Text(error))
        self.query_one("#submit", Button).disabled = self.draft is None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        touched = {name for name, value in self.values().items() if value} | {
            (event.input.id or "").removeprefix("field-")
        }
        self._recheck(touched)

    @on(Input.Submitted)
    def _next(self) -> None:
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        self._recheck(touched=None)
        if self.draft is None:
            self.notify("Fix the fields in red first.", severity="warning")
            return
        self.dismiss(self.draft)

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- a job's logs --------------------------------------------------------------------------------


class JobLogsScreen(RaycaiScreen):
    """A submitted job's log, live until the job ends: follow, wrap, filter, matching-only and
    save with the LogPane's keys (the same as the node logs screen's)."""

    BINDINGS = [Binding("escape", "back", "Back", id="joblogs.back")]
    DEFAULT_CSS = """
    JobLogsScreen #joblogs-title { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, cluster: str, job_id: str, work: ClusterWork, project_dir: Path) -> None:
        from raycai_tui.widgets.log_pane import LogPane

        super().__init__()
        self.cluster = cluster
        self.job_id = job_id
        self.work = work
        self.save_dir = project_dir
        self.help_title = f"logs of job {job_id}"
        self.state = "connecting"
        self.pane = LogPane(
            save_path=self._save_path,
            label=self.state,
            filter_placeholder="filter: text or regex",
            id="joblogs-pane",
            view_id="joblogs-view",
        )
        self.view = self.pane.view
        self.filter_input = self.pane.filter_input
        self.status = self.pane.status

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Logs · {self.cluster} / job {self.job_id}"), id="joblogs-title")
        yield self.pane
        yield Footer()

    def on_mount(self) -> None:
        self.view.focus()
        self.follow_job()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.pane.set_label(state)

    @work(group="joblogs.follow", exclusive=True, exit_on_error=False)
    async def follow_job(self) -> None:
        from raycai_core.ray.parsers import LineSplitter
        from raycai_tui.widgets.log_view import Marker, clean_line

        splitter = LineSplitter()
        try:
            client: RayClient = await self.work.client()
            self._set_state("live")
            async for chunk in client.tail_job_logs(self.job_id):
                lines = [clean_line(line) for line in splitter.feed(chunk.encode())]
                if lines:
                    self.pane.append(lines)
            rest = splitter.flush()
            if rest is not None:
                self.pane.append([clean_line(rest)])
            info = await client.job(self.job_id)
            self.state = f"job {info.status}"
            self.pane.append([Marker(f"… job {self.job_id} is {info.status} …")])
        except Exception as exc:
            self.state = f"stopped: {describe_error(exc)}"
            self.pane.append([Marker(f"… {describe_error(exc)} …")])
        self._set_state(self.state)

    def action_back(self) -> None:
        self.dismiss()

    def _save_path(self) -> Path:
        stem = f"job-{self.job_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = self.save_dir / f"{stem}.log", 1
        while path.exists():
            n += 1
            path = self.save_dir / f"{stem}-{n}.log"
        return path
