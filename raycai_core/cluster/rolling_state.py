"""The record of a rolling update: `rolling.json` in the cluster's directory.

Written atomically by the updating process (under the cluster's lock) before and after each
step, so that it always says which nodes run which settings: the `plan`'s nodes (by their
application id) run the previous settings until they appear in `replaced`; every other
worker runs the stored spec's (cluster.json; a group's new settings are stored when its
first replacement starts). `current` is the step in flight (its new node is named before
the application is created). When the updating process dies, the file stays `running`
while nobody holds the cluster's lock: `raycai status` says the update was interrupted, and
`raycai up` with the same spec goes on from `current` (the new node is kept when it exists,
else created again); another spec is refused until that update is finished.

The autoscaler's provider reads `state` too: while `running`, it neither creates nor deletes
workers (an update holds one more worker than the group's count on purpose).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from raycai_core.atomic import atomic_write_json, read_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lock import lock_free
from raycai_core.cluster.rolling_plan import Replacement, RollingPlan
from raycai_core.spec import ClusterSpec, SpecError, parse_spec

ROLLING_FILE = "rolling.json"
SCHEMA = 1
RollingState = Literal["running", "stopped", "done"]


def rolling_file(paths: ClusterPaths) -> Path:
    return paths.root / ROLLING_FILE


@dataclass
class Step:
    """The replacement in flight: `new` replaces `old` of `group`; `phase` creating,
    joining (the new node is created and waits to join Ray), draining (the old one goes)."""

    group: str
    old: str
    new: str
    phase: str = "creating"
    new_app_id: str = ""
    since: float = field(default_factory=time.time)


@dataclass
class Replaced:
    group: str
    old: str
    new: str
    at: float = field(default_factory=time.time)


@dataclass
class RollingRecord:
    cluster: str
    target: dict[str, Any]  # the spec the update goes to (cluster.json's form)
    previous: dict[str, Any]  # the stored spec when it began
    plan: list[Replacement]
    restart_head: list[str] = field(default_factory=list)
    head_done: bool = False
    state: RollingState = "running"
    replaced: list[Replaced] = field(default_factory=list)
    current: Step | None = None
    reason: str = ""  # why it stopped
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    events: list[str] = field(default_factory=list)  # the last few progress lines

    @classmethod
    def begin(cls, plan: RollingPlan) -> RollingRecord:
        return cls(
            cluster=plan.cluster,
            target=plan.target.model_dump(mode="json"),
            previous=plan.previous.model_dump(mode="json"),
            plan=list(plan.replace),
            restart_head=list(plan.restart_head),
        )

    def target_spec(self) -> ClusterSpec:
        return parse_spec(self.target)

    def same_target(self, spec: ClusterSpec) -> bool:
        return self.target == spec.model_dump(mode="json")

    @property
    def unfinished(self) -> bool:
        return self.state in ("running", "stopped")

    def binds(self, spec: ClusterSpec) -> bool:
        """Whether `up spec` must finish this update first: it is unfinished, for another
        target, and some node already runs its settings (a stop before any replacement
        stored the previous settings back: a new plan may start from there)."""
        if not self.unfinished or self.same_target(spec):
            return False
        started = self.head_done or any(r.new for r in self.replaced)
        return self.state == "running" or started

    def pending(self) -> list[Replacement]:
        """The planned replacements not done yet, in order."""
        done = {r.old for r in self.replaced}
        return [r for r in self.plan if r.node not in done]

    def progress_text(self) -> str:
        """`2 of 4 workers replaced` (+ the head), and the step in flight."""
        text = f"{len(self.replaced)} of {len(self.plan)} worker(s) replaced"
        if self.restart_head:
            text = ("head restarted, " if self.head_done else "head to restart, ") + text
        if self.current is not None and self.state == "running":
            step = self.current
            text += f"; {step.group}: {step.new} replacing {step.old} ({step.phase})"
        return text

    def note(self, line: str, keep: int = 20) -> None:
        self.events = [*self.events, line][-keep:]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "cluster": self.cluster,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "restart_head": self.restart_head,
            "head_done": self.head_done,
            "plan": [asdict(r) for r in self.plan],
            "replaced": [asdict(r) for r in self.replaced],
            "current": asdict(self.current) if self.current else None,
            "events": self.events,
            "previous": self.previous,
            "target": self.target,
        }


def write_rolling(paths: ClusterPaths, record: RollingRecord) -> None:
    record.updated_at = time.time()
    atomic_write_json(rolling_file(paths), record.to_json(), sort_keys=False)


def read_rolling(paths: ClusterPaths) -> RollingRecord | None:
    """The cluster's update record; None when there is none or it cannot be read (a corrupt
    record must not block the cluster: the next `up` plans from the stored spec again)."""
    data = read_json(rolling_file(paths))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    try:
        current = data.get("current")
        record = RollingRecord(
            cluster=str(data["cluster"]),
            target=dict(data["target"]),
            previous=dict(data["previous"]),
            plan=[Replacement(**item) for item in data.get("plan") or []],
            restart_head=[str(x) for x in data.get("restart_head") or []],
            head_done=bool(data.get("head_done")),
            state=data.get("state", "running"),
            replaced=[Replaced(**item) for item in data.get("replaced") or []],
            current=Step(**current) if isinstance(current, dict) else None,
            reason=str(data.get("reason") or ""),
            started_at=float(data.get("started_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
            finished_at=data.get("finished_at"),
            events=[str(x) for x in data.get("events") or []],
        )
        record.target_spec()
    except (KeyError, TypeError, ValueError, SpecError):
        return None
    if record.state not in ("running", "stopped", "done"):
        return None
    return record


def status_json(record: RollingRecord, interrupted: bool) -> dict[str, Any]:
    """`raycai status --json`'s `update`."""
    state = "interrupted" if interrupted else record.state
    return {
        "state": state,
        "reason": record.reason,
        "progress": record.progress_text(),
        "planned": [r.node for r in record.plan],
        "replaced": [asdict(r) for r in record.replaced],
        "current": asdict(record.current) if record.current else None,
        "restart_head": record.restart_head,
        "head_done": record.head_done,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


def status_line(record: RollingRecord, interrupted: bool) -> str:
    """`raycai status`'s line about the update."""
    if interrupted:
        return (
            f"update: interrupted ({record.progress_text()}); `raycai up` with the same "
            "spec goes on from there"
        )
    if record.state == "running":
        return f"update: running ({record.progress_text()})"
    if record.state == "stopped":
        return (
            f"update: stopped ({record.progress_text()}): {record.reason}; `raycai up` "
            "with the same spec tries again"
        )
    return f"update: done ({record.progress_text()})"


def interrupted(paths: ClusterPaths, record: RollingRecord) -> bool:
    """Recorded as running while nobody holds the cluster's lock: its process died."""
    return record.state == "running" and lock_free(paths)


@dataclass(frozen=True)
class UpdateStatus:
    """The cluster's last rolling update, as `raycai status` and raycai-tui show it."""

    record: RollingRecord
    interrupted: bool

    @property
    def running(self) -> bool:
        """A process carries it out now (recorded as running, the cluster's lock held)."""
        return self.record.state == "running" and not self.interrupted

    def line(self) -> str:
        return status_line(self.record, self.interrupted)

    def to_json(self) -> dict[str, Any]:
        return status_json(self.record, self.interrupted)


def update_status(paths: ClusterPaths) -> UpdateStatus | None:
    """The cluster's last update (rolling.json, and whether its process still holds the
    lock: one look for everything shown of it); None when it never had one."""
    record = read_rolling(paths)
    return None if record is None else UpdateStatus(record, interrupted(paths, record))
