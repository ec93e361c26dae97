"""The cluster's applications, one row per node, reconciled by node name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from raycai_tui.format import GIB, age, number, phase_text, status_text, styled, used_of
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row

if TYPE_CHECKING:
    from raycai_core.cluster.view import ClusterView, NodeRow

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


def view_rows(view: ClusterView) -> list[Row]:
    return [(row.node, node_cells(row, view)) for row in view.rows]


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

    def show(self, view: ClusterView) -> None:
        self.reconcile(view_rows(view))
