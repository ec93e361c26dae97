"""The lifecycle's value types: progress, requests, results, planned actions and errors.

No I/O here: `plan.py` decides with these, `lifecycle.py` (ClusterManager) carries them out,
and the CLI and the TUI render them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.records import NodeRecord
from raycai_core.cml.models import AppStatus
from raycai_core.naming import HEAD_NODE

if TYPE_CHECKING:  # rolling_state builds on views and types
    from raycai_core.cluster.rolling_state import UpdateStatus

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Progress:
    """One step of a long operation, for the CLI and the TUI to render."""

    step: str
    message: str
    done: int | None = None
    total: int | None = None
    level: Level = "info"


ProgressCallback = Callable[[Progress], None]


# -- planned actions and what became of them -----------------------------------------------

ActionKind = Literal["create", "restart", "resume", "remove", "delete"]
# What each kind did, in words (a heal's create recreates a node that went missing).
PAST: dict[ActionKind, str] = {
    "create": "created",
    "restart": "restarted",
    "resume": "resumed",
    "remove": "removed",
    "delete": "deleted",
}


@dataclass(frozen=True)
class Action:
    """One change a plan asks for. `app` is the application acted on (restart, remove,
    delete); a remove drains Ray node `drain_id` first when it has one, and says `note`
    when a joined worker cannot be drained."""

    kind: ActionKind
    node: str
    reason: str = ""
    app: ClusterApp | None = None
    drain_id: str | None = None
    note: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.node}"


@dataclass(frozen=True)
class ActionDone:
    """An action carried out: `result` in one word (`created`...), `detail` says more."""

    action: Action
    result: str
    detail: str = ""
    app: ClusterApp | None = None  # create: the new application

    @property
    def node(self) -> str:
        return self.action.node

    def __str__(self) -> str:
        return f"{self.node}: {self.result}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ActionFailure:
    action: Action
    error: Exception

    def __str__(self) -> str:
        return f"{self.action}: {self.error}"


# -- errors --------------------------------------------------------------------------------


class ClusterError(Exception):
    """An operation could not complete; the message says why and how to resume."""


class ClusterNotFound(ClusterError):
    pass


class ClusterTimeout(ClusterError):
    pass


class NodeFailed(ClusterError):
    pass


class GroupNotGiven(ClusterError):
    """A scale names a worker group the cluster does not have, or names none on a cluster
    with several (raised before anything changed; the message lists the groups)."""


class WorkersBusy(ClusterError):
    """A scale-down would remove workers that run Ray work (raised before anything changed)."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        super().__init__(
            f"removing {', '.join(self.nodes)} would stop Ray work running there; "
            "confirm to drain them (running tasks get the drain timeout to finish)"
        )


class ActionsFailed(ClusterError):
    """Some of an operation's actions failed. Every action carried out is in `done` (it was
    reported as progress too), every failure in `failed` with its cause; `skipped` were not
    attempted (a heal stops at its first failure). Rerunning the operation resumes it."""

    def __init__(
        self,
        operation: str,
        cluster: str,
        done: Sequence[ActionDone],
        failed: Sequence[ActionFailure],
        skipped: Sequence[Action] = (),
        resume: str = "",
    ) -> None:
        self.operation = operation
        self.cluster = cluster
        self.done = list(done)
        self.failed = list(failed)
        self.skipped = list(skipped)
        self.resume = resume or "rerun the command to resume; nothing is duplicated"
        total = len(self.done) + len(self.failed) + len(self.skipped)
        head = (
            f"{operation} of {cluster}: {len(self.failed)} of {total} action(s) failed "
            f"({self.resume})"
        )
        super().__init__("\n  ".join([head, *self.lines()]))

    @property
    def cause(self) -> Exception:
        """The first failure's error (what a single-step caller would have seen)."""
        return self.failed[0].error

    def lines(self) -> list[str]:
        """`done: ...`, `failed: ...` and `not attempted: ...`, one action a line."""
        return (
            [f"done: {d}" for d in self.done]
            + [f"failed: {f}" for f in self.failed]
            + [f"not attempted: {a}" for a in self.skipped]
        )


# -- requests and results ------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleTarget:
    """A requested worker count: absolute (`3`) or relative to the stored one (`+2`, `-1`)."""

    count: int | None = None
    delta: int | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.delta is None):
            raise ValueError("a scale target is either a count or a delta")
        if self.count is not None and self.count < 0:
            raise ValueError(f"the worker count must be at least 0, not {self.count}")

    @classmethod
    def parse(cls, text: str) -> ScaleTarget:
        """`3` -> count 3; `+2` / `-1` -> delta. ValueError with a clear message otherwise."""
        value = text.strip()
        sign, digits = (value[0], value[1:]) if value[:1] in ("+", "-") else ("", value)
        if not digits.isascii() or not digits.isdigit() or len(digits) > 6:
            raise ValueError(
                f"{text!r} is not a worker count: use N (e.g. 3) to set it, "
                "+K or -K (e.g. +2, -1) to change it"
            )
        number = int(digits)
        if sign == "+":
            return cls(delta=number)
        if sign == "-":
            return cls(delta=-number)
        return cls(count=number)

    def apply(self, current: int) -> int:
        """The new count for a cluster that has `current` (never below 0)."""
        if self.count is not None:
            return self.count
        return max(0, current + (self.delta or 0))

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.delta:+d}"


@dataclass(frozen=True)
class ScaleResult:
    """`before`/`after`: worker counts summed over the groups scaled; `groups` each scaled
    group's (before, after)."""

    before: int
    after: int
    added: list[str]
    removed: list[str]
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class HealAction:
    node: str
    action: Literal["restarted", "recreated", "resumed"]
    reason: str

    @classmethod
    def of(cls, done: ActionDone) -> HealAction:
        """A heal's action done, in its words (a create recreates a missing node)."""
        kind = done.action.kind
        word = "recreated" if kind == "create" else "resumed" if kind == "resume" else "restarted"
        return cls(done.node, word, done.action.reason)


@dataclass(frozen=True)
class ClusterSummary:
    name: str
    desired: Desired | None
    members: list[ClusterApp]
    joined_workers: int  # by phases.node_joined, from the launchers' records
    records: Mapping[str, NodeRecord] = field(default_factory=dict)
    update: UpdateStatus | None = None  # its last rolling update (rolling.json)

    @property
    def head(self) -> ClusterApp | None:
        return next((m for m in self.members if m.node == HEAD_NODE), None)

    @property
    def workers(self) -> list[ClusterApp]:
        return [m for m in self.members if m.node != HEAD_NODE]

    @property
    def workers_running(self) -> int:
        return sum(1 for m in self.workers if m.app.status is AppStatus.RUNNING)

    @property
    def desired_workers(self) -> int | None:
        """Every group's desired count (autoscaled: its minimum), summed."""
        if self.desired is None:
            return None
        return sum(group.count for group in self.desired.spec.groups.values())

    def total(self, resource: Literal["cpu", "memory", "nvidia_gpu"]) -> float:
        return float(sum(getattr(m.app, resource) for m in self.members))

    def held(self, resource: Literal["cpu", "memory", "nvidia_gpu"]) -> float:
        """What the cluster holds of the project's quota: its applications not stopped
        (a suspended cluster's are all stopped: nothing)."""
        stopped = (AppStatus.STOPPED,)
        return float(
            sum(getattr(m.app, resource) for m in self.members if m.app.status not in stopped)
        )

    @property
    def suspended(self) -> bool:
        return self.desired is not None and self.desired.state == "suspended"

    @property
    def created_at(self) -> float | None:
        if self.desired and self.desired.created_at:
            return self.desired.created_at
        head = self.head
        if head and head.app.created_at:
            return head.app.created_at.timestamp()
        return None
