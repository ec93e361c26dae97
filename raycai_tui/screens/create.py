"""The create form: sizes validated as typed (the core's rules), creation shown step by step.

Workers come in groups (each its name, size, min and max, accelerator, label and runtime):
one group named `worker` by default, so the form left as it is makes the cluster it always
made; groups are added and removed in place. Each field is checked as typed with the spec's
own rules; the spec is built by the core (`spec_from_flags(groups=...)`, as `raycai up
--group` does), whose errors go back under the field they name.

Submitting asks the app's operations service to run `ClusterManager.up(spec, wait=False)`
(scripts, head created, head ready, workers created); the form shows its progress, then the
nodes joining, from the app's watch of the new cluster (the core's one watch,
`raycai_core.cluster.readiness`, as `raycai up --wait` does), and opens the cluster screen
once the cluster is ready: every node joined and Ray answered. Leaving the form stops only
the showing: the creation and the watch belong to the app and go on (the clusters list
shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, Static

from raycai_tui.format import describe_error
from raycai_tui.messages import OperationChanged, ReadinessChanged
from raycai_tui.screens.base import RaycaiScreen
from raycai_tui.widgets.header import RaycaiHeader

if TYPE_CHECKING:
    from textual.timer import Timer

    from raycai_core.cluster.preflight import Check
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
# Cluster-wide: Ray's v1 autoscaler has one idle timeout for every group.
IDLE = Field("workers-idle", "Idle timeout s", "autoscaling.idle_timeout_s", "300")
# The head suspends the cluster after this many idle minutes (empty: never).
SUSPEND = Field("idle-suspend", "Suspend idle min", "idle_suspend_minutes", "")
FIELDS = (NAME, *HEAD_FIELDS, IDLE, SUSPEND)
RUNTIME_FIELD = "head.runtime_identifier"


def _minutes(raw: str) -> float | None:
    """The idle-suspend field: empty is never (the spec checks the rest)."""
    return float(raw) if raw.strip() else None


@dataclass(frozen=True)
class GroupField:
    key: str  # the Input's id is `<group prefix>-<key>`
    label: str
    setting: str  # the group's setting (group_field_problem, SpecError locations)
    default: str
    flag: str = ""  # its `--group` key ("" for the name)
    optional: bool = False  # empty is fine (and sends nothing)
    placeholder: str = ""


GROUP_FIELDS = (
    GroupField("name", "Group name", "name", "worker", placeholder="e.g. gpu"),
    GroupField("count", "Workers (min)", "count", "2", "count"),
    # Empty means "as many as the minimum": a fixed size, kept without an autoscaler.
    GroupField("max", "Max workers", "max", "", "max", True, "= min: fixed size"),
    GroupField("cpu", "vCPU each", "cpu", "2", "cpu"),
    GroupField("memory", "Memory GB each", "memory", "8", "memory"),
    GroupField("gpu", "GPUs each", "nvidia_gpu", "0", "gpu"),
    GroupField("accelerator", "Accelerator", "accelerator", "", "accelerator", True, "e.g. L40S"),
    GroupField(
        "label", "Accel. label id", "accelerator_label_id", "", "accelerator_label", True, "CML id"
    ),
)
BY_SETTING = {f.setting: f for f in GROUP_FIELDS} | {"min": GROUP_FIELDS[1]}
GROUP_WIDGET = re.compile(r"^(workers\d*)-(\w+)$")
SAME_AS_HEAD = "same as the head"
# The form checks each field itself (`_problem` sets -invalid). An Input left to validate on
# blur, with no validators of its own, would clear -invalid when focus leaves it, leaving the
# problem written under a field that no longer looks wrong.
NO_INPUT_VALIDATION: tuple[str, ...] = ()
PREFLIGHT_DELAY_S = 0.3


def group_prefix(serial: int) -> str:
    """The ids of a group's widgets start with this: `workers` for the first group (the
    form's fields as they always were), `workers2`, `workers3`... for added ones."""
    return "workers" if serial == 1 else f"workers{serial}"


class GroupForm(Vertical):
    """One worker group's fields, a runtime choice and a Remove button."""

    DEFAULT_CSS = """
    GroupForm { height: auto; margin-top: 1; }
    GroupForm .group-head { height: auto; }
    GroupForm .group-head .group-title { margin-top: 0; width: 18; }
    GroupForm Select { width: 80; }
    """

    def __init__(self, serial: int, name: str = "worker", count: str = "2") -> None:
        self.prefix = group_prefix(serial)
        super().__init__(id=f"{self.prefix}-group", classes="worker-group")
        self.defaults = {"name": name, "count": count}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="group-head"):
            yield Label("Worker group", classes="group-title")
            yield Button("Remove group", id=f"{self.prefix}-remove", compact=True)
        for field in GROUP_FIELDS:
            widget_id = f"{self.prefix}-{field.key}"
            with Horizontal(classes="field", id=f"field-{widget_id}"):
                yield Label(field.label, classes="field-label")
                yield Input(
                    self.defaults.get(field.key, field.default),
                    id=widget_id,
                    placeholder=field.placeholder,
                    compact=True,
                    validate_on=NO_INPUT_VALIDATION,
                )
                yield Static("", id=f"{widget_id}-problem", classes="problem", markup=False)
        with Horizontal(classes="field"):
            yield Label("Runtime", classes="field-label")
            yield Select[str]([], prompt=SAME_AS_HEAD, id=f"{self.prefix}-runtime", compact=True)

    def value(self, key: str) -> str:
        return self.query_one(f"#{self.prefix}-{key}", Input).value

    @property
    def runtime(self) -> str:
        value = self.query_one(f"#{self.prefix}-runtime", Select).value
        return value if isinstance(value, str) else ""

    def flag(self) -> str:
        """This group as one `--group NAME:key=value,...` (the texts as typed: the core
        checks them)."""
        settings = []
        bounded = bool(self.value("max").strip())  # min..max: Ray's autoscaler keeps it
        for field in GROUP_FIELDS[1:]:
            text = self.value(field.key).strip()
            key = "min" if field.key == "count" and bounded else field.flag
            if text or not field.optional:
                settings.append(f"{key}={text}")
        if self.runtime:
            settings.append(f"runtime={self.runtime}")
        return f"{self.value('name').strip()}:{','.join(settings)}"


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
            # Below the form's fields, out of sight on a terminal shorter than the form: a new
            # step is brought into view (an update of a line shown already is not, so that a
            # user who scrolled up to the fields stays there).
            self.call_after_refresh(self.scroll_visible, animate=False)
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
            "ctrl+g",
            "add_group",
            "Add group",
            id="create.add_group",
            tooltip="Add a worker group (each its size, min/max, accelerator and runtime)",
        ),
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
        self._serials = 1  # groups made so far (their widget ids are never reused)
        self._runtimes: list[tuple[str, str]] = []  # (label, identifier) for added groups
        self._kernels: dict[str, str] = {}  # runtime identifier -> kernel ("Python 3.11")
        self._shared_memory: int | None = None  # the project's limit, MB (None: not read)
        self._preflight_timer: Timer | None = None
        self.preflight: list[Check] = []  # the last checks shown (problems only)

    def compose(self) -> ComposeResult:
        yield RaycaiHeader()
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
            yield from self._field(IDLE, "for every group: an idle worker above min goes")
            # The whole cluster's idle rule, beside the workers' own (both about idleness).
            yield from self._field(SUSPEND, "minutes with no job, actor or Serve app; empty: never")
            yield GroupForm(1)
            yield Button("Add worker group (ctrl+g)", id="add-group", compact=True)
            # `raycai up`'s checks of the spec as typed (files only, off the UI thread).
            yield Static("", id="preflight", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Create (ctrl+s)", id="create", variant="primary", compact=True)
                yield Button("Back (esc)", id="back", compact=True)
            yield Steps(id="steps")
        yield Footer()

    def _field(self, field: Field, placeholder: str = "") -> ComposeResult:
        with Horizontal(classes="field", id=f"field-{field.widget_id}"):
            yield Label(field.label, classes="field-label")
            yield Input(
                field.default,
                id=field.widget_id,
                placeholder=placeholder,
                compact=True,
                validate_on=NO_INPUT_VALIDATION,
            )
            yield Static("", id=f"{field.widget_id}-problem", classes="problem", markup=False)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self.query_one("#preflight", Static).display = False
        self._show_remove_buttons()
        self.load_runtimes()

    # -- worker groups ------------------------------------------------------------------

    @property
    def groups(self) -> list[GroupForm]:
        return list(self.query(GroupForm))

    async def action_add_group(self) -> None:
        """A new group after the others, named `group<n>` until the user names it."""
        self._serials += 1
        names = {g.value("name").strip() for g in self.groups}
        name = next(f"group{n}" for n in range(2, 100) if f"group{n}" not in names)
        group = GroupForm(self._serials, name=name, count="1")
        await self.query_one("#form").mount(group, before=self.query_one("#add-group"))
        group.query_one(Select).set_options(self._runtimes)
        self._show_remove_buttons()
        group.query_one(f"#{group.prefix}-name", Input).focus()

    async def remove_group(self, group: GroupForm) -> None:
        if len(self.groups) <= 1:
            self.notify("A cluster needs at least one worker group.", severity="warning")
            return
        await group.remove()
        self._show_remove_buttons()
        self._check_group_names()

    def _show_remove_buttons(self) -> None:
        several = len(self.groups) > 1
        for group in self.groups:
            group.query_one(f"#{group.prefix}-remove", Button).display = several

    @on(Button.Pressed, "#add-group")
    async def _add_pressed(self) -> None:
        await self.action_add_group()

    @on(Button.Pressed)
    async def _remove_pressed(self, event: Button.Pressed) -> None:
        if not (event.button.id or "").endswith("-remove"):
            return
        event.stop()
        group = next((g for g in event.button.ancestors if isinstance(g, GroupForm)), None)
        if group is not None:
            await self.remove_group(group)

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
        with contextlib.suppress(Exception):  # unread: the shared memory is not checked
            self._shared_memory = await self.services.shared_memory_limit()
            self._schedule_preflight()

    def show_runtimes(self, runtimes: list[Runtime]) -> None:
        from raycai_core.cml.runtimes import session_runtime

        select = self.query_one("#runtime", Select)
        select.prompt = "choose a runtime"
        select.set_options((r.label, r.image_identifier) for r in runtimes)
        self._runtimes = [(r.label, r.image_identifier) for r in runtimes]
        self._kernels = {r.image_identifier: r.kernel for r in runtimes}
        for group in self.groups:
            group.query_one(Select).set_options(self._runtimes)
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

        problem = field_problem(field.spec_field, raw)
        if problem is None and field is NAME and raw.strip() in self.existing:
            problem = f"a cluster named {raw.strip()!r} already exists in this project"
        return problem

    def group_problem(self, group: GroupForm, field: GroupField) -> str | None:
        """Why a group's field is not valid as typed (the spec's rules), or None."""
        from raycai_core.spec import bounds_problem, group_field_problem, group_name_problem

        raw = group.value(field.key)
        if field.optional and not raw.strip():
            return None
        if field.key == "name":
            name = raw.strip()
            problem = group_name_problem(name)
            earlier = self.groups[: self.groups.index(group)] if group in self.groups else []
            if problem is None and any(g.value("name").strip() == name for g in earlier):
                problem = f"another group is named {name!r}"
            return problem
        problem = group_field_problem(field.setting, raw)
        if problem is None and field.key == "max":
            problem = bounds_problem(group.value("count"), raw)
        return problem

    def _check_group(self, group: GroupForm, key: str) -> str | None:
        field = next(f for f in GROUP_FIELDS if f.key == key)
        problem = self.group_problem(group, field)
        self._problem(f"{group.prefix}-{key}", problem)
        return problem

    def _check_group_names(self) -> None:
        """Names are checked together: a name taken by an earlier group is refused."""
        for group in self.groups:
            self._check_group(group, "name")

    def runtime_problem(self) -> str | None:
        from raycai_core.spec import field_problem

        value = self.query_one("#runtime", Select).value
        return field_problem(RUNTIME_FIELD, value if isinstance(value, str) else "")

    @on(Input.Changed)
    @on(Select.Changed)
    def _schedule_preflight(self) -> None:
        """The checks run once typing pauses (a spec per keystroke would be wasted)."""
        if self._preflight_timer is not None:
            self._preflight_timer.stop()
        self._preflight_timer = self.set_timer(PREFLIGHT_DELAY_S, self._start_preflight)

    def _start_preflight(self) -> None:
        spec = self._spec_as_typed()
        if spec is not None:
            self.run_preflight(spec)

    def _spec_as_typed(self) -> ClusterSpec | None:
        """The spec the fields make now, or None (nothing shown: the fields say why)."""
        from raycai_core.spec import SpecError, spec_from_flags

        v = self.values()
        runtime = self.query_one("#runtime", Select).value
        if not isinstance(runtime, str) or not v["name"].strip():
            return None
        try:
            return spec_from_flags(
                name=v["name"].strip(),
                runtime=runtime,
                groups=[group.flag() for group in self.groups],
                idle_timeout=float(v["workers-idle"]),
                head_cpu=float(v["head-cpu"]),
                head_memory=float(v["head-memory"]),
                head_gpu=int(float(v["head-gpu"])),
                idle_suspend_minutes=_minutes(v["idle-suspend"]),
            )
        except (SpecError, ValueError):
            return None

    async def checks_of(self, spec: ClusterSpec) -> list[Check]:
        """`raycai up`'s checks (preflight.up_checks), in a thread: they read files."""
        from raycai_core.cluster.preflight import up_checks

        if self.services is None:
            return []
        project_dir = self.services.target.project_dir
        return await asyncio.to_thread(
            up_checks,
            project_dir,
            spec,
            runtime_kernels=dict(self._kernels),
            shared_memory_mb=self._shared_memory,
        )

    @work(group="preflight", exclusive=True, exit_on_error=False)
    async def run_preflight(self, spec: ClusterSpec) -> None:
        self.show_preflight(await self.checks_of(spec))

    def show_preflight(self, checks: list[Check]) -> None:
        self.preflight = checks
        shown = self.query_one("#preflight", Static)
        shown.display = bool(checks)
        lines = [
            Text(
                ("refused: " if c.blocks_up else "warning: ") + c.line(),
                style="bold red" if c.blocks_up else "yellow",
            )
            for c in checks
        ]
        shown.update(Text("\n").join(lines))

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        field = next((f for f in FIELDS if f.widget_id == event.input.id), None)
        if field is not None:
            self._problem(field.widget_id, self.field_problem(field, event.value))
            return
        group = next((g for g in event.input.ancestors if isinstance(g, GroupForm)), None)
        match = GROUP_WIDGET.match(event.input.id or "")
        if group is None or match is None or not group.is_attached:
            return
        key = match.group(2)
        if key == "name":
            self._check_group_names()
            return
        self._check_group(group, key)
        if key == "count" and group.value("max").strip():
            self._check_group(group, "max")  # the pair's rule

    @on(Select.Changed, "#runtime")
    def _runtime_changed(self) -> None:
        self._problem("runtime", self.runtime_problem())

    # -- submit ------------------------------------------------------------------------

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        """Enter moves to the next field; on the last one it submits."""
        event.stop()
        inputs = list(self.query(Input))
        if inputs and event.input is not inputs[-1]:
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
        for group in self.groups:
            for group_field in GROUP_FIELDS:
                problem = self._check_group(group, group_field.key)
                if problem:
                    found[f"{group.prefix}-{group_field.key}"] = problem
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
            flags = [group.flag() for group in self.groups]
            try:
                return spec_from_flags(
                    name=v["name"].strip(),
                    runtime=str(runtime),
                    groups=flags,
                    idle_timeout=float(v["workers-idle"]),
                    head_cpu=float(v["head-cpu"]),
                    head_memory=float(v["head-memory"]),
                    head_gpu=int(float(v["head-gpu"])),
                    idle_suspend_minutes=_minutes(v["idle-suspend"]),
                )
            except SpecError as exc:
                for location, message in exc.problems:
                    widget_id = self.widget_of(location, message, flags)
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

    def widget_of(self, location: str, message: str, flags: list[str]) -> str:
        """The field a SpecError's problem is about: `workers.<group>.<setting>` (or
        `workers.<setting>` for the one group), a head or cluster field, a --group flag."""
        by_spec_field = {f.spec_field: f.widget_id for f in FIELDS}
        by_spec_field[RUNTIME_FIELD] = "runtime"
        by_spec_field["workers.idle_timeout_s"] = IDLE.widget_id
        if location in by_spec_field:
            return by_spec_field[location]
        groups = self.groups
        parts = location.split(".")
        if parts[0] == "workers" and groups:
            named = {g.value("name").strip(): g for g in groups}
            group, setting = None, "name"
            if len(parts) > 1 and parts[1] in named:
                group, setting = named[parts[1]], ".".join(parts[2:3]) or "name"
            elif len(groups) == 1:  # the one-table shape: workers.<setting>
                group, setting = groups[0], ".".join(parts[1:2]) or "name"
            if group is not None:
                # A problem of the group as a whole (or of its runtime) goes under its name.
                return f"{group.prefix}-{BY_SETTING.get(setting, GROUP_FIELDS[0]).key}"
        if location == "--group":
            for group, flag in zip(groups, flags, strict=True):
                if repr(flag) in message:
                    return f"{group.prefix}-name"
        return "name"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit" and self.creating is not None:
            return None  # shown, greyed out, while a creation runs
        return super().check_action(action, parameters)

    def action_submit(self) -> None:
        spec = self.build_spec()
        if spec is None or self.connected_services() is None:
            return
        self.submit_checked(spec)

    @work(group="submit", exclusive=True, exit_on_error=False)
    async def submit_checked(self, spec: ClusterSpec) -> None:
        """`raycai up`'s checks first: a spec that would certainly fail is not created."""
        from raycai_core.cluster.preflight import refusal

        checks = await self.checks_of(spec)
        self.show_preflight(checks)
        if refusal(checks) is not None:
            self.query_one("#preflight").scroll_visible(animate=False)
            self.notify(
                "Not created: the cluster would fail (see above; `raycai doctor` checks all)",
                severity="error",
            )
            return
        self.create(spec)

    def create(self, spec: ClusterSpec) -> None:
        if self.creating is not None:
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
        if self not in self.app.screen_stack:
            return  # a late tick reaching a form being left must not replace another screen
        steps = self.query_one(Steps)
        view = message.view
        steps.step("joined", message.line, "error" if view.failed_row is not None else "info")
        if view.ready:
            steps.done()
            self._creation_ended()
            if self.app.screen is self:  # not under a dialog: that would be replaced
                self.app.switch_screen(ClusterScreen(message.name))

    def action_cancel(self) -> None:
        if self.creating is not None and not self.joining:
            self.notify(f"{self.creating} goes on being created; its row shows the operation")
        elif self.joining:
            self.notify(f"{self.creating} keeps starting; its row shows the nodes joining")
        below = self.app.screen_stack[-2] if len(self.app.screen_stack) > 1 else None
        self.app.pop_screen()
        from raycai_tui.screens.clusters import ClustersScreen

        if self.creating is not None and isinstance(below, ClustersScreen):
            below.select_cluster(self.creating)  # its row, once it arrives
