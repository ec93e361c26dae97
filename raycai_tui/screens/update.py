"""Change a running cluster's node settings: a rolling update (raycai_core.cluster.rolling).

Prefilled with the stored spec (a group's vCPU, memory, GPUs and runtime, the head's vCPU
and memory, Ray's version); the plan (which workers are replaced, in which order, what
stays, the peak quota), or why it cannot be done, is shown as typed, from the core's pure
planner and the cluster screen's last view. Update hands the new spec to the app's
operations service, which carries it out beyond this screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

if TYPE_CHECKING:
    from raycai_core.cluster.rolling_plan import RollingPlan
    from raycai_core.cluster.view import NodeRow
    from raycai_core.spec import ClusterSpec

GROUP_FIELDS = (
    ("cpu", "vCPU per worker"),
    ("memory", "memory per worker, GB"),
    ("nvidia_gpu", "GPUs per worker"),
    ("runtime_identifier", "worker runtime"),
)
HEAD_FIELDS = (("cpu", "head vCPU"), ("memory", "head memory, GB"))


@dataclass(frozen=True)
class UpdateChoice:
    spec: ClusterSpec
    restart_head: bool


def _number(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def changed_spec(
    stored: ClusterSpec,
    group: str,
    values: dict[str, str],
    head: dict[str, str],
    ray_version: str,
) -> ClusterSpec:
    """`stored` with the typed settings; pydantic's ValidationError (or ValueError) says
    what is wrong."""
    from raycai_core.spec import NodeSpec, RaySettings, WorkerGroupSpec

    old = stored.group(group)
    data: dict[str, Any] = old.model_dump()
    data.update({k: v.strip() for k, v in values.items()})
    new_group = WorkerGroupSpec.model_validate(data)
    head_data: dict[str, Any] = stored.head.model_dump()
    head_data.update({k: v.strip() for k, v in head.items()})
    new_head = NodeSpec.model_validate(head_data)
    ray = RaySettings.model_validate({**stored.ray.model_dump(), "version": ray_version.strip()})
    groups = {name: (new_group if name == group else g) for name, g in stored.groups.items()}
    return stored.model_copy(update={"groups": groups, "head": new_head, "ray": ray})


def plan_text(
    stored: ClusterSpec, spec: ClusterSpec, rows: list[NodeRow], restart_head: bool
) -> tuple[RollingPlan | None, str]:
    """(the plan, its lines) or (None, why not / nothing to do)."""
    from raycai_core.cluster.rolling_plan import UpdateRefused, plan_update, settings_changed

    if not settings_changed(stored, spec):
        return None, "No node setting changed."
    try:
        plan = plan_update(stored, spec, rows, restart_head=restart_head)
    except UpdateRefused as exc:
        return None, str(exc)
    return plan, "\n".join(plan.lines())


class UpdateScreen(ModalScreen["UpdateChoice | None"]):
    DEFAULT_CSS = """
    UpdateScreen { align: center middle; }
    UpdateScreen #dialog { width: 100; }
    UpdateScreen .row { height: 1; margin-bottom: 1; }
    UpdateScreen .row Static { width: 24; }
    UpdateScreen .row Input { width: 1fr; height: 1; border: none; padding: 0 1; }
    UpdateScreen #plan { height: auto; max-height: 14; margin: 1 0; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="update.cancel", tooltip="Change nothing"),
    ]

    def __init__(self, stored: ClusterSpec, rows: list[NodeRow], group: str | None) -> None:
        """`stored`: the cluster's stored spec; `rows`: its worker rows last seen (the plan's
        order); `group`: the group to edit (the selected row's; else the first)."""
        super().__init__()
        self.stored = stored
        self.rows = rows
        self.group = group if group in stored.groups else stored.group_names[0]
        self.plan: RollingPlan | None = None
        self.spec: ClusterSpec | None = None

    def compose(self) -> ComposeResult:
        stored = self.stored
        group = stored.group(self.group)
        several = len(stored.groups) > 1
        with Vertical(id="dialog"):
            title = f"Update {stored.name}" + (f": group {self.group}" if several else "")
            yield Label(title, id="dialog-title")
            for name, label in GROUP_FIELDS:
                with Horizontal(classes="row"):
                    yield Static(label)
                    value = getattr(group, name)
                    text = value if isinstance(value, str) else _number(value)
                    yield Input(text, id=f"group-{name}", select_on_focus=True)
            for name, label in HEAD_FIELDS:
                with Horizontal(classes="row"):
                    yield Static(label)
                    yield Input(_number(getattr(stored.head, name)), id=f"head-{name}")
            with Horizontal(classes="row"):
                yield Static("Ray version")
                yield Input(stored.ray.version, id="ray-version")
            yield Checkbox("Restart the head (Ray version, head size: jobs in flight are lost)",
                           id="restart-head")  # fmt: skip
            with VerticalScroll(id="plan"):
                yield Static("No node setting changed.", id="plan-text", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Update", id="apply", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#group-cpu", Input).focus()

    def _replan(self) -> None:
        values = {n: self.query_one(f"#group-{n}", Input).value for n, _ in GROUP_FIELDS}
        head = {n: self.query_one(f"#head-{n}", Input).value for n, _ in HEAD_FIELDS}
        version = self.query_one("#ray-version", Input).value
        restart = self.query_one("#restart-head", Checkbox).value
        self.plan, self.spec = None, None
        try:
            spec = changed_spec(self.stored, self.group, values, head, version)
        except ValueError as exc:  # pydantic's ValidationError is one
            text = f"Not a valid setting: {exc}"
        else:
            self.plan, text = plan_text(self.stored, spec, self.rows, restart)
            self.spec = spec if self.plan is not None else None
        self.query_one("#plan-text", Static).update(text)
        self.query_one("#apply", Button).disabled = self.plan is None

    def on_input_changed(self, event: Input.Changed) -> None:
        self._replan()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._replan()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field: to the Update button once the plan is valid (enter again
        applies it; the plan stays in view), else nowhere."""
        event.stop()
        apply = self.query_one("#apply", Button)
        if not apply.disabled:
            apply.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply" and self.spec is not None:
            restart = self.query_one("#restart-head", Checkbox).value
            self.dismiss(UpdateChoice(self.spec, restart))
        elif event.button.id == "cancel":
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
