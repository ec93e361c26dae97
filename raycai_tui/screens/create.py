"""The create form: sizes validated as typed (the core's rules), creation shown step by step.

Submitting asks the app's operations service to run `ClusterManager.up(spec, wait=False)`
(scripts, head created, head ready, workers created); the form shows its progress, then the
nodes joining, from the app's watch of the new cluster (the core's one watch,
`raycai_core.cluster.readiness`, as `raycai up --wait` does), and opens the cluster screen
once the cluster is ready: every node joined and Ray answered. Leaving the form stops only
the showing: the creation and the watch belong to the app and go on (the clusters list
shows them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from raycai_tui.format import describe_error
from raycai_tui.messages import OperationChanged, ReadinessChanged
from raycai_tui.screens.base import RaycaiScreen

if TYPE_CHECKING:
    from raycai_core.cml.models import Runtime
    from raycai_core.spec import ClusterSpec


@dataclass(frozen=True)
class Field:
    widget_id: str  # the Input's id
    label: str
    spec_field: str  # the core's name for it (field_problem, SpecError)
    default: str


NAME = Field("name", "Name", "name", "")
HEAD_FIELDS = (
    Field("head-cpu", "vCPU", "head.cpu", "2"),
    Field("head-memory", "Memory GB", "head.memory", "8"),
    Field("head-gpu", "GPUs", "head.nvidia_gpu", "0"),
)
WORKER_FIELDS = (
    Field("workers-count", "Workers (min)", "workers.count", "2"),
    Field("workers-max", "Max workers", "workers.max", ""),
    Field("workers-idle", "Idle timeout s", "workers.idle_timeout_s", "300"),
    Field("workers-cpu", "vCPU each", "workers.cpu", "2"),
    Field("workers-memory", "Memory GB each", "workers.memory", "8"),
    Field("workers-gpu", "GPUs each", "workers.nvidia_gpu", "0"),
)
FIELDS = (NAME, *HEAD_FIELDS, *WORKER_FIELDS)
# Empty means "as many as the minimum": a fixed size, kept without an autoscaler.
OPTIONAL_FIELDS = frozenset({"workers-max"})
PLACEHOLDERS = {"workers-max": "= min: fixed size"}  # more than min: autoscaled
RUNTIME_FIELD = "head.runtime_identifier"


class Steps(Vertical):
    """One line per creation step, updated in place; ✓ once a later step started."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: dict[str, str] = {}

    def reset(self) -> None:
        self.lines.clear()
        self.remove_children()

    def step(self, key: str, message: str, level: str = "info") -> None:
        if key not in self.lines:
            self.mount(Static(id=f"step-{key}", markup=False))
        self.lines[key] = message
        keys = list(self.lines)
        for index, name in enumerate(keys):
            last = index == len(keys) - 1
            style = {"error": "bold red", "warning": "yellow"}.get(level if last else "", "")
            mark = "✗ " if style == "bold red" else ("… " if last else "✓ ")
            text = Text(mark, style=style or ("green" if not last else "yellow"))
            text.append(self.lines[name], style=style)
            self.query_one(f"#step-{name}", Static).update(text)

    def done(self) -> None:
        for name, message in self.lines.items():
            self.query_one(f"#step-{name}", Static).update(Text("✓ " + message, style="green"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines.values())


class CreateScreen(RaycaiScreen):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Create", id="create.submit", tooltip="Create the cluster"),
        Binding(
            "escape", "cancel", "Back", id="create.cancel", tooltip="Back to the clusters list"
        ),
    ]
    MUTATING = frozenset({"submit"})
    help_title = "new cluster"

    def __init__(self, existing: set[str] | None = None) -> None:
        super().__init__()
        self.existing = existing or set()
        self.creating: str | None = None  # the cluster being created
        self.joining = False  # up() returned; watching the nodes join
        self._spec: ClusterSpec | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield Label("New Ray cluster", classes="form-title")
            yield from self._field(NAME, "e.g. demo: lower-case letters, digits, hyphens")
            with Horizontal(classes="field"):
                yield Label("Runtime", classes="field-label")
                yield Select[str]([], prompt="loading runtimes…", id="runtime", compact=True)
                yield Static("", id="runtime-problem", classes="problem", markup=False)
            yield Label("Head node", classes="group-title")
            for field in HEAD_FIELDS:
                yield from self._field(field)
            yield Label("Worker nodes", classes="group-title")
            for field in WORKER_FIELDS:
                yield from self._field(field)
            with Horizontal(id="buttons"):
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)
                yield Button("Back (esc)", id="back", compact=True)
            yield Steps(id="steps")
        yield Footer()

    def _field(self, field: Field, placeholder: str = "") -> ComposeResult:
        placeholder = placeholder or PLACEHOLDERS.get(field.widget_id, "")
        with Horizontal(classes="field", id=f"field-{field.widget_id}"):
            yield Label(field.label, classes="field-label")
            yield Input(field.default, id=field.widget_id, placeholder=placeholder, compact=True)
            yield Static("", id=f"{field.widget_id}-problem", classes="problem", markup=False)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self.load_runtimes()

    # -- runtimes -----------------------------------------------------------------------

    @work(group="runtimes", exclusive=True, exit_on_error=False)
    async def load_runtimes(self) -> None:
        select = self.query_one("#runtime", Select)
        if self.services is None:
            self._problem("runtime", "not connected to a workspace yet")
            return
        try:
            runtimes = await self.services.runtimes()
        except Exception as exc:  # shown under the field; the form stays usable
            select.set_options([])
            self._problem("runtime", f"could not list the runtimes: {describe_error(exc)}")
            return
        self.show_runtimes(runtimes)

    def show_runtimes(self, runtimes: list[Runtime]) -> None:
        from raycai_core.cml.runtimes import session_runtime

        select = self.query_one("#runtime", Select)
        select.prompt = "choose a runtime"
        select.set_options((r.label, r.image_identifier) for r in runtimes)
        last = self.services.last_runtime if self.services else None
        chosen = next((r for r in runtimes if r.image_identifier == last), None)
        chosen = chosen or session_runtime(runtimes)
        chosen = chosen or (runtimes[0] if len(runtimes) == 1 else None)
        if chosen is not None:
            select.value = chosen.image_identifier
        self._problem("runtime", None if runtimes else "the workspace lists no runtimes")

    # -- validation as typed -----------------------------------------------------------

    def _problem(self, widget_id: str, problem: str | None) -> None:
        self.query_one(f"#{widget_id}-problem", Static).update(problem or "")
        widget = self.query_one(f"#{widget_id}")
        widget.set_class(bool(problem), "-invalid")

    def field_problem(self, field: Field, raw: str) -> str | None:
        from raycai_core.spec import field_problem

        if field.widget_id in OPTIONAL_FIELDS and not raw.strip():
            return None
        problem = field_problem(field.spec_field, raw)
        if problem is None and field is NAME and raw.strip() in self.existing:
            problem = f"a cluster named {raw.strip()!r} already exists in this project"
        return problem

    def runtime_problem(self) -> str | None:
        from raycai_core.spec import field_problem

        value = self.query_one("#runtime", Select).value
        return field_problem(RUNTIME_FIELD, value if isinstance(value, str) else "")

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        field = next((f for f in FIELDS if f.widget_id == event.input.id), None)
        if field is not None:
            self._problem(field.widget_id, self.field_problem(field, event.value))

    @on(Select.Changed, "#runtime")
    def _runtime_changed(self) -> None:
        self._problem("runtime", self.runtime_problem())

    # -- submit ------------------------------------------------------------------------

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        """Enter moves to the next field; on the last one it submits."""
        event.stop()
        if event.input.id != FIELDS[-1].widget_id:
            self.focus_next()
        elif self.check_action("submit", ()):
            self.action_submit()

    @on(Button.Pressed, "#create")
    def _create_pressed(self) -> None:
        if self.check_action("submit", ()):
            self.action_submit()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_cancel()

    def values(self) -> dict[str, str]:
        return {f.widget_id: self.query_one(f"#{f.widget_id}", Input).value for f in FIELDS}

    def problems(self) -> dict[str, str]:
        """Every field's problem (widget id -> message); shown under the fields too."""
        found: dict[str, str] = {}
        for field in FIELDS:
            problem = self.field_problem(field, self.query_one(f"#{field.widget_id}", Input).value)
            self._problem(field.widget_id, problem)
            if problem:
                found[field.widget_id] = problem
        runtime = self.runtime_problem()
        self._problem("runtime", runtime)
        if runtime:
            found["runtime"] = runtime
        return found

    def build_spec(self) -> ClusterSpec | None:
        """The spec, or None after showing why not (nothing is created then)."""
        from raycai_core.spec import SpecError, spec_from_flags

        problems = self.problems()
        if not problems:
            v = self.values()
            runtime = self.query_one("#runtime", Select).value
            count = int(float(v["workers-count"]))
            bounded = bool(v["workers-max"].strip())  # min..max: Ray's autoscaler keeps it
            try:
                return spec_from_flags(
                    name=v["name"].strip(),
                    runtime=str(runtime),
                    workers=None if bounded else count,
                    min_workers=count if bounded else None,
                    max_workers=int(float(v["workers-max"])) if bounded else None,
                    idle_timeout=float(v["workers-idle"]),
                    cpu=float(v["workers-cpu"]),
                    memory=float(v["workers-memory"]),
                    gpu=int(float(v["workers-gpu"])),
                    head_cpu=float(v["head-cpu"]),
                    head_memory=float(v["head-memory"]),
                    head_gpu=int(float(v["head-gpu"])),
                )
            except SpecError as exc:
                by_spec_field = {f.spec_field: f.widget_id for f in FIELDS}
                by_spec_field[RUNTIME_FIELD] = "runtime"
                for spec_field, message in exc.problems:
                    widget_id = by_spec_field.get(spec_field, "name")
                    self._problem(widget_id, message)
                    problems[widget_id] = message
        first = next(iter(problems))
        self.query_one(f"#{first}").focus()
        count = len(problems)
        self.notify(
            f"{count} field{'s' if count > 1 else ''} to fix: nothing was created",
            severity="error",
        )
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit" and self.creating is not None:
            return None  # shown, greyed out, while a creation runs
        return super().check_action(action, parameters)

    def action_submit(self) -> None:
        spec = self.build_spec()
        if spec is None or self.connected_services() is None:
            return
        steps = self.query_one(Steps)
        steps.reset()
        self.creating, self._spec = spec.name, spec
        if not self.raycai.operations.create(spec):  # told why (e.g. already being created)
            self._creation_ended()
            return
        if self.services is not None:
            self.services.last_runtime = spec.head.runtime_identifier
        self.refresh_bindings()
        self.query_one("#form").set_class(True, "-busy")

    def _creation_ended(self) -> None:
        self.creating = None
        self.joining = False
        self.query_one("#form").set_class(False, "-busy")
        self.refresh_bindings()

    def on_operation_changed(self, message: OperationChanged) -> None:
        """The creation's progress, then its end (from the app's operations service)."""
        operation, step = message.operation, message.progress
        if operation.kind != "create" or operation.cluster != self.creating or self.joining:
            return
        steps = self.query_one(Steps)
        if step is not None:
            count = f" ({step.done}/{step.total})" if step.total else ""
            steps.step(step.step, step.message + ("" if step.step == "joined" else count))
        elif operation.ended and operation.error is not None:
            steps.step("failed", f"creation failed: {operation.error}", "error")
            self._creation_ended()
        elif operation.ended and self._spec is not None:
            self.joining = True
            self.raycai.watch_ready(self._spec.name)

    def on_readiness_changed(self, message: ReadinessChanged) -> None:
        """A tick of the app's watch: the nodes joining, then the cluster screen once ready."""
        from raycai_tui.screens.cluster import ClusterScreen

        if message.name != self.creating or not self.joining:
            return
        steps = self.query_one(Steps)
        view = message.view
        steps.step("joined", message.line, "error" if view.failed_row is not None else "info")
        if view.ready:
            steps.done()
            self._creation_ended()
            self.app.switch_screen(ClusterScreen(message.name))

    def action_cancel(self) -> None:
        if self.creating is not None and not self.joining:
            self.notify(f"{self.creating} goes on being created; its row shows the operation")
        elif self.joining:
            self.notify(f"{self.creating} keeps starting; its row shows the nodes joining")
        self.app.pop_screen()
