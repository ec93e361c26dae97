"""Ask how to scale a cluster: a number of workers (`3`) or a change (`+2`, `-1`); on a cluster
with several worker groups, also which group (prefilled with the selected row's).

Prefilled with the stored count last seen; a change is applied by the core to the group's
stored count at the time it runs, so it stays right even if the count moved meanwhile. Both
fields are checked as typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ScaleTarget


@dataclass(frozen=True)
class ScaleChoice:
    group: str  # the group chosen (a one-group cluster: its only one)
    target: ScaleTarget


def parse_target(raw: str) -> tuple[ScaleTarget | None, str | None]:
    """(the target, None) or (None, why `raw` is not one)."""
    from raycai_core.cluster.lifecycle import ScaleTarget
    from raycai_core.spec import field_problem

    try:
        target = ScaleTarget.parse(raw)
    except ValueError as exc:
        return None, str(exc)
    if target.count is not None:
        problem = field_problem("workers.count", str(target.count))
        if problem:
            return None, problem
    return target, None


def group_problem(raw: str, groups: dict[str, int]) -> str | None:
    """Why `raw` is not one of the cluster's groups, or None."""
    from raycai_core.spec import group_name_problem

    name = raw.strip()
    listed = ", ".join(groups)
    if not name:
        return f"say which group: {listed}"
    if name in groups:
        return None
    problem = group_name_problem(name)
    return f"{problem}; the groups are {listed}" if problem else f"no group {name!r}: {listed}"


class ScaleScreen(ModalScreen["ScaleChoice | None"]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="scale.cancel", tooltip="Keep the count"),
    ]

    def __init__(self, cluster: str, counts: dict[str, int], group: str | None = None) -> None:
        """`counts`: each worker group's stored count; `group`: the one to prefill."""
        super().__init__()
        self.cluster = cluster
        self.counts = counts
        self.several = len(counts) > 1
        self.group = group if group in counts else (None if self.several else next(iter(counts)))

    def _now_text(self, group: str | None) -> str:
        change = "New number of workers, or a change (+2, -1):"
        if not self.several:
            return f"Workers now: {self.counts[next(iter(self.counts))]}. {change}"
        if group in self.counts:
            return f"Group {group}: {self.counts[group]} workers now. {change}"
        return f"Groups: {', '.join(f'{g} {n}' for g, n in self.counts.items())}. {change}"

    def compose(self) -> ComposeResult:
        current = self.counts.get(self.group, "") if self.group else ""
        with Vertical(id="dialog", classes="scale"):
            yield Label(f"Scale {self.cluster}", id="dialog-title")
            if self.several:
                yield Static("Worker group:")
                yield Input(self.group or "", id="group", select_on_focus=True)
                yield Static("", id="group-problem", classes="problem", markup=False)
            yield Static(self._now_text(self.group), id="now")
            yield Input(str(current), id="count", select_on_focus=True)
            yield Static("", id="count-problem", classes="problem", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Scale", id="apply", variant="primary")

    def on_mount(self) -> None:
        first = "#group" if self.several and self.group is None else "#count"
        self.query_one(first, Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "group":
            problem = group_problem(event.value, self.counts)
            self.query_one("#group-problem", Static).update(problem or "")
            name = event.value.strip()
            self.query_one("#now", Static).update(self._now_text(name if not problem else None))
            return
        _, problem = parse_target(event.value)
        self.query_one("#count-problem", Static).update(problem or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "group":
            self.query_one("#count", Input).focus()
            return
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def chosen_group(self) -> tuple[str | None, str | None]:
        """(the group, None) or (None, why the group field is not one)."""
        if not self.several:
            return next(iter(self.counts)), None
        raw = self.query_one("#group", Input).value
        problem = group_problem(raw, self.counts)
        return (None, problem) if problem else (raw.strip(), None)

    def _apply(self) -> None:
        group, group_error = self.chosen_group()
        if group is None:
            self.query_one("#group-problem", Static).update(group_error or "")
            self.query_one("#group", Input).focus()
            return
        target, problem = parse_target(self.query_one("#count", Input).value)
        if target is None:
            self.query_one("#count-problem", Static).update(problem or "")
            return
        self.dismiss(ScaleChoice(group, target))

    def action_cancel(self) -> None:
        self.dismiss(None)
