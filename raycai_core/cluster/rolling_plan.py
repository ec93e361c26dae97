"""The plan of a rolling update: what `raycai up` with changed node settings replaces, in
which order, what stays, and what it costs in quota at the peak. PURE: no API call, no file.

A running cluster's node settings are its applications' (sizes, runtime) and what their
launchers read at start (launcher.json: the group's Ray sizes, resources and labels, the
environment, Ray's version). raycai replaces a changed group's workers one at a time (a new
application first, the old one drained and deleted once the new one joined Ray), so the
group never has fewer joined workers than before; the peak is one extra node of one group.
The head cannot be replaced beside itself: a change of the head's settings, Ray's version or
search, or Serve's, restarts it (`--restart-head`, explicit: jobs in flight are lost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from raycai_core.cluster.types import ClusterError
from raycai_core.cluster.view import NodeRow
from raycai_core.cml.models import AppStatus
from raycai_core.spec import ClusterSpec, NodeSpec, WorkerGroupSpec

_PYTHON = re.compile(r"python(\d+\.\d+)")


class UpdateRefused(ClusterError):
    """The change cannot be applied in place, or not without `--restart-head`; nothing
    changed. The message says why and what to do."""


@dataclass(frozen=True)
class Replacement:
    """One worker to replace: `node` (application `app_id`) of `group`, by a new node with
    the group's new settings."""

    group: str
    node: str
    app_id: str
    reason: str = ""  # why this one goes at this point (idle, busy, not joined ...)


@dataclass(frozen=True)
class NodeCost:
    cpu: float
    memory: float
    gpu: int

    def __str__(self) -> str:
        text = f"{self.cpu:g} vCPU, {self.memory:g} GB"
        return text + (f", {self.gpu} GPU" if self.gpu else "")


@dataclass(frozen=True)
class RollingPlan:
    """`changes`: what differs, one line each; `restart_head`: why the head restarts (empty:
    it stays); `replace`: the workers to replace, in order (group by group); `keep`: the
    nodes that stay as they are; `peak`: the largest extra node the update holds at once
    (None when no worker is replaced); `notes`: what else happens (a group added or removed,
    a setting applied in place)."""

    cluster: str
    previous: ClusterSpec
    target: ClusterSpec
    changes: list[str]
    restart_head: list[str]
    replace: list[Replacement]
    keep: list[str]
    peak: NodeCost | None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.restart_head and not self.replace and not self.changes

    @property
    def groups(self) -> list[str]:
        """The groups whose workers are replaced, in the order they roll."""
        seen: list[str] = []
        for item in self.replace:
            if item.group not in seen:
                seen.append(item.group)
        return seen

    def lines(self) -> list[str]:
        """The plan in words, for `raycai up` and the cluster screen."""
        out = [f"Rolling update of cluster {self.cluster}:"]
        out += [f"  change: {line}" for line in self.changes]
        if self.restart_head:
            out.append(
                "  1. restart the head ("
                + "; ".join(self.restart_head)
                + "): Serve applications are deployed again, jobs in flight are LOST"
            )
        step = 2 if self.restart_head else 1
        for group in self.groups:
            nodes = [r for r in self.replace if r.group == group]
            order = ", ".join(f"{r.node} ({r.reason})" if r.reason else r.node for r in nodes)
            out.append(
                f"  {step}. group {group}: replace {len(nodes)} worker(s) one at a time, "
                f"in this order: {order} (each: a new worker is created, waits until it "
                "joined Ray, then the old one is drained and deleted)"
            )
            step += 1
        if self.keep:
            out.append(f"  unchanged: {', '.join(self.keep)}")
        if self.peak is not None:
            out.append(
                f"  peak quota: one extra worker at a time ({self.peak}) beyond what the "
                "cluster uses now"
            )
        out += [f"  note: {note}" for note in self.notes]
        return out


def runtime_python(runtime: str) -> str | None:
    """The Python major.minor a CML runtime image names (`...-python3.11-...`), or None."""
    match = _PYTHON.search(runtime)
    return match.group(1) if match else None


def group_settings(group: WorkerGroupSpec) -> tuple[object, ...]:
    """What a group's running workers were started with: a change needs new workers."""
    return (
        group.node_settings(),
        group.accelerator,
        group.accelerator_label_id,
        group.resources,
        group.labels,
    )


def with_group_settings(spec: ClusterSpec, group: str, source: ClusterSpec) -> ClusterSpec:
    """`spec` with group `group`'s node settings (not its count or bounds) taken from
    `source`, and the cluster-wide settings the new workers read (environment, Ray, Serve)
    too: the desired state of a group whose replacement has begun."""
    mine = spec.group(group)
    theirs = source.group(group)
    merged = theirs.model_copy(
        update={"count": mine.count, "min": mine.min, "max": mine.max, "autoscale": mine.autoscale}
    )
    groups = {name: (merged if name == group else g) for name, g in spec.groups.items()}
    return spec.model_copy(
        update={"groups": groups, "env": source.env, "ray": source.ray, "serve": source.serve}
    )


def with_head(spec: ClusterSpec, source: ClusterSpec) -> ClusterSpec:
    """`spec` with the head's settings and the cluster-wide ones of `source` (after the
    head restarted with them)."""
    return spec.model_copy(
        update={"head": source.head, "env": source.env, "ray": source.ray, "serve": source.serve}
    )


def _diff(what: str, old: object, new: object) -> str:
    return f"{what}: {old} -> {new}"


def _node_diff(what: str, old: NodeSpec, new: NodeSpec) -> list[str]:
    out = []
    for name in ("cpu", "memory", "nvidia_gpu", "runtime_identifier"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            out.append(_diff(f"{what} {name}", a, b))
    return out


def _group_diff(name: str, old: WorkerGroupSpec, new: WorkerGroupSpec) -> list[str]:
    what = f"group {name}"
    out = _node_diff(what, old.node_settings(), new.node_settings())
    for field_name in ("accelerator", "accelerator_label_id", "resources", "labels"):
        a, b = getattr(old, field_name), getattr(new, field_name)
        if a != b:
            out.append(_diff(f"{what} {field_name}", a or "-", b or "-"))
    return out


def _autoscaled(spec: ClusterSpec) -> bool:
    return any(group.autoscale for group in spec.groups.values())


def _group_notes(old: ClusterSpec, new: ClusterSpec) -> list[str]:
    """Groups added or removed (their workers are created or deleted, as `up` does); a group
    that looks renamed (gone, and a new one with its settings) says how to keep capacity."""
    gone = [g for g in old.group_names if g not in new.groups]
    added = [g for g in new.group_names if g not in old.groups]
    notes = []
    for a in gone:
        twin = next(
            (b for b in added if group_settings(old.group(a)) == group_settings(new.group(b))),
            None,
        )
        if twin is None:
            notes.append(f"group {a} is no longer in the spec: its workers are deleted")
            continue
        added.remove(twin)
        notes.append(
            f"group {a} is gone and group {twin} is new with its settings: a group's name "
            f"cannot change in place (its nodes and applications are named after it), so "
            f"{a}'s workers are deleted and {twin}'s created. To keep the capacity, first "
            f"`raycai up` with both groups, then without {a}"
        )
    notes += [f"group {b} is new: its workers are created" for b in added]
    return notes


def _order_key(row: NodeRow) -> tuple[int, int]:
    """Workers not running or not joined go first (they carry nothing), then idle, then
    busy; the highest index first within each tier (as a scale-down removes them)."""
    if row.app_status not in (AppStatus.RUNNING, AppStatus.STARTING):
        tier = 0
    elif not row.joined:
        tier = 1
    elif row.ray is not None and row.ray.idle:
        tier = 2
    else:
        tier = 3
    return tier, -row.index


def _reason(row: NodeRow) -> str:
    return ("application " + row.app_status.value, "not joined", "idle", "busy")[_order_key(row)[0]]


def plan_update(
    previous: ClusterSpec,
    target: ClusterSpec,
    workers: list[NodeRow],
    *,
    restart_head: bool = False,
) -> RollingPlan:
    """The rolling update from the stored spec `previous` to `target`, for the cluster's
    current worker rows. UpdateRefused when it cannot be done in place, or needs the head
    restarted and `restart_head` is not given (nothing changed then)."""
    name = target.name
    if previous.name != name:
        raise UpdateRefused(
            f"a cluster's name cannot change in place ({previous.name} -> {name}): "
            f"`raycai up {name}` creates another cluster; move the work there, then "
            f"`raycai down {previous.name}`"
        )
    if _autoscaled(previous) != _autoscaled(target):
        word = "on" if _autoscaled(target) else "off"
        raise UpdateRefused(
            f"turning Ray's autoscaler {word} cannot be done in place on cluster {name}: "
            f"`raycai down {name}`, then `raycai up` with the new spec"
        )
    for group in target.group_names:
        if group in previous.groups and (
            previous.group(group).autoscale != target.group(group).autoscale
        ):
            raise UpdateRefused(
                f"group {group}: switching between a fixed count and autoscaling cannot be "
                f"done in place: `raycai down {name}`, then `raycai up` with the new spec"
            )

    changes: list[str] = []
    head_why: list[str] = []
    head_changes = _node_diff("head", previous.head, target.head)
    if head_changes:
        changes += head_changes
        head_why.append("its settings change")
    all_workers = ""
    if previous.ray.version != target.ray.version:
        changes.append(_diff("Ray version", previous.ray.version, target.ray.version))
        head_why.append(f"Ray {target.ray.version}")
        all_workers = "Ray's version"
    elif previous.ray != target.ray:
        changes.append("Ray settings (search path or ports) change")
        head_why.append("Ray's settings change")
        all_workers = "Ray's settings"
    old_py, new_py = (runtime_python(s.head.runtime_identifier) for s in (previous, target))
    if old_py and new_py and old_py != new_py:
        head_why.append(f"Python {old_py} -> {new_py}")
        all_workers = all_workers or "Python's version"
    if previous.env != target.env:
        keys = sorted(set(previous.env) ^ set(target.env)) + sorted(
            k for k in set(previous.env) & set(target.env) if previous.env[k] != target.env[k]
        )
        changes.append(f"environment: {', '.join(keys)} changed")
        all_workers = all_workers or "the environment"
    if previous.autoscaling != target.autoscaling:
        changes.append("autoscaler settings (applied in place, no node replaced)")
    if previous.healing != target.healing:
        changes.append(_diff("healing", previous.healing, target.healing))

    # Every worker must run the head's Python (Ray refuses a driver or node of another).
    head_python = new_py
    for group_name, group in target.groups.items():
        python = runtime_python(group.runtime_identifier)
        if head_python and python and python != head_python:
            raise UpdateRefused(
                f"group {group_name} would run Python {python} and the head Python "
                f"{head_python}: Ray's nodes must all run the same Python; give them "
                "runtimes of the same Python"
            )

    changed_groups: list[str] = []
    for group_name in target.group_names:
        if group_name not in previous.groups:
            continue
        diff = _group_diff(group_name, previous.group(group_name), target.group(group_name))
        changes += diff
        if diff or all_workers:
            changed_groups.append(group_name)

    if head_why and not restart_head:
        ray_change = previous.ray.version != target.ray.version
        why = (
            f"Ray {previous.ray.version} -> {target.ray.version}: workers of another Ray "
            "version cannot join the running head"
            if ray_change
            else f"the head's change ({'; '.join(head_why)}) needs a new head"
        )
        raise UpdateRefused(
            f"{why}. Rerun with --restart-head: the head restarts first with the new "
            "settings (Serve applications are deployed again, jobs in flight are shown "
            "LOST, as after a head that lost its state), then the workers are replaced one "
            "at a time"
        )

    replace: list[Replacement] = []
    keep: list[str] = []
    for group_name in changed_groups:
        rows = sorted((r for r in workers if r.group == group_name), key=_order_key)
        replace += [
            Replacement(group_name, r.node, r.app.app.id, _reason(r))
            for r in rows
            if r.app is not None
        ]
    replaced = {r.node for r in replace}
    keep = [r.node for r in workers if r.node not in replaced and r.group in target.groups]
    if not head_why:
        keep.insert(0, "head")
    notes = _group_notes(previous, target)
    if all_workers and changed_groups:
        notes.append(f"every worker is replaced: {all_workers} changed")
    if previous.env != target.env and not head_why:
        notes.append(
            "the head keeps its environment until it restarts (add --restart-head to "
            "restart it too)"
        )
    peak = None
    if replace:
        sizes = [target.group(g) for g in {r.group for r in replace}]
        biggest = max(sizes, key=lambda g: (g.nvidia_gpu, g.cpu, g.memory))
        peak = NodeCost(biggest.cpu, biggest.memory, biggest.nvidia_gpu)
    return RollingPlan(
        cluster=name,
        previous=previous,
        target=target,
        changes=changes,
        restart_head=head_why,
        replace=replace,
        keep=keep,
        peak=peak,
        notes=notes,
    )


def settings_changed(previous: ClusterSpec, target: ClusterSpec) -> bool:
    """Whether `target` changes node settings a running cluster was started with (what
    `up` alone refuses in place; a rolling update applies it)."""
    if (
        previous.head != target.head
        or previous.ray != target.ray
        or previous.env != target.env
        or _autoscaled(previous) != _autoscaled(target)
    ):
        return True
    return any(
        group_settings(previous.group(g)) != group_settings(target.group(g))
        or previous.group(g).autoscale != target.group(g).autoscale
        for g in target.group_names
        if g in previous.groups
    )
