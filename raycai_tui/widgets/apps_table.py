"""The cluster's applications, one row per node, reconciled by node name.

A cluster with several worker groups gets a row per group before the group's workers (keyed
by the group's name, which no node has): its counts (desired, or min/max and the
autoscaler's target), running and joined workers, and each worker's size. A one-group
cluster shows its nodes only, as it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from raycai_tui.format import GIB, age, number, phase_text, status_text, styled, used_of
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row

if TYPE_CHECKING:
    from raycai_core.cluster.view import ClusterView, GroupCounts, NodeRow
    from raycai_core.spec import WorkerGroupSpec

APP_WIDTH = 24  # the application column; longer names lose their start, not their node


def tail(text: str, width: int) -> str:
    """`text` cut from the left when too long: the end of a name tells the nodes apart."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def node_cells(row: NodeRow, view: ClusterView) -> tuple[str | Text, ...]:
    """One row's cells; what they mean (uptime, why not ready) is the view's decision."""
    app = row.app.app if row.app else None
    ray = row.ray
    if ray is not None:
        ray_state = styled(ray.state, "green" if ray.alive else "red")
        cpu, memory, gpu = (
            used_of(ray.cpu),
            used_of(ray.memory, GIB),
            used_of(ray.gpu),
        )
    else:
        ray_state = styled("-", "dim")
        cpu = f"-/{number(app.cpu)}" if app else "-"
        memory = f"-/{number(app.memory)}" if app else "-"
        gpu = f"-/{app.nvidia_gpu}" if app else "-"
    status = row.app_status.value
    reason = view.reason(row)
    return (
        row.node,
        row.role,
        tail(app.name, APP_WIDTH) if app else "-",
        status_text(status),
        phase_text(row.phase),
        ray_state,
        cpu,
        memory,
        gpu,
        age(view.uptime_s(row)),
        styled(reason, "yellow") if reason else "",
    )


def group_counts_text(counts: GroupCounts, autoscaler: bool) -> str:
    """`2 wanted`, or for an autoscaled group `min 0, max 4, target 1` (target: the workers
    the autoscaler asked for, said only while it keeps the cluster)."""
    if not counts.in_spec:
        return "not in the spec"
    if not counts.autoscale:
        return f"{counts.desired} wanted"
    text = f"min {counts.min}, max {counts.max}"
    return text + (f", target {counts.existing}" if autoscaler else "")


def group_cells(
    counts: GroupCounts, spec: WorkerGroupSpec | None, autoscaler: bool
) -> tuple[str | Text, ...]:
    """A group's row: its counts under APPLICATION/APP/LAUNCHER, each worker's size under
    CPU/MEM/GPU, what is missing (or its accelerator) under WHY NOT READY."""
    if not counts.in_spec:
        note = styled("no longer in the spec: `raycai up` removes its workers", "yellow")
    elif counts.missing and not counts.autoscale:
        note = styled(f"{counts.missing} worker application(s) not created yet", "yellow")
    elif spec is not None and spec.accelerator:
        note = styled(f"accelerator {spec.accelerator}", "dim")
    else:
        note = ""
    return (
        styled(counts.name, "bold"),
        styled("group", "dim"),
        styled(group_counts_text(counts, autoscaler), "bold"),
        f"{counts.running} run",
        f"{counts.joined} joined",
        "",
        number(spec.cpu) if spec else "",
        number(spec.memory) if spec else "",
        str(spec.nvidia_gpu) if spec else "",
        "",
        note,
    )


def grouped(view: ClusterView) -> bool:
    """Whether the table shows a row per worker group (the cluster has several)."""
    return len(view.group_names) > 1


def view_rows(view: ClusterView, autoscaler: bool = False) -> list[Row]:
    """The rows: the head, then each group's row (when there are several) and workers.
    `autoscaler`: Ray's autoscaler keeps the cluster (its targets are shown)."""
    if not grouped(view):
        return [(row.node, node_cells(row, view)) for row in view.rows]
    groups = view.desired.spec.groups if view.desired else {}
    rows: list[Row] = [(row.node, node_cells(row, view)) for row in view.rows if row.group is None]
    for name in view.group_names:
        counts = view.group_counts(name)
        rows.append((name, group_cells(counts, groups.get(name), autoscaler)))
        rows.extend((row.node, node_cells(row, view)) for row in view.rows if row.group == name)
    return rows


class AppsTable(KeyedTable):
    COLUMNS = (
        Column("node", "NODE", 10),
        Column("role", "ROLE", 6),
        Column("app", "APPLICATION", APP_WIDTH),
        Column("status", "APP", 8),
        Column("phase", "LAUNCHER", 16),
        Column("ray", "RAY", 5),
        Column("cpu", "CPU", 7),
        Column("memory", "MEM GB", 9),
        Column("gpu", "GPU", 4),
        Column("uptime", "UP", 4),
        Column("reason", "WHY NOT READY", 42),
    )

    def show(self, view: ClusterView, autoscaler: bool = False) -> None:
        self.reconcile(view_rows(view, autoscaler))
