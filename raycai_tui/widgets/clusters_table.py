"""The project's clusters, one row per cluster, reconciled by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from raycai_tui.format import age, number, status_text, styled
from raycai_tui.widgets.keyed_table import Column, KeyedTable, Row

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ClusterSummary


def state_of(summary: ClusterSummary) -> Text:
    if summary.desired is None:
        return Text("orphaned", style="red") if summary.members else Text("-", style="dim")
    if summary.desired.state == "deleting":
        return Text("deleting", style="yellow")
    if summary.desired.state == "suspended":
        return Text("suspended", style="bold blue")
    return Text("active", style="green")


def cluster_cells(
    summary: ClusterSummary, now: float, operation: str | None = None
) -> tuple[str | Text, ...]:
    """One row; `operation` is what this app is doing to the cluster (e.g. `scaling 2 → 3…`)."""
    head = summary.head
    desired = "?" if summary.desired_workers is None else str(summary.desired_workers)
    created = summary.created_at
    # A suspended cluster holds none of the quota (its applications are stopped); when and
    # why it was suspended shows where an operation would.
    amount = summary.held if summary.suspended else summary.total
    last: Text | str = styled(operation, "bold yellow") if operation else ""
    if summary.suspended and not operation:  # when and why it sleeps, in the same column
        from raycai_core.cluster.suspend import suspended_note

        last = Text(suspended_note(summary.desired, now, short=True) or "", style="dim blue")
    return (
        summary.name,
        state_of(summary),
        status_text(head.app.status.value) if head else Text("-", style="dim"),
        f"{desired}/{summary.workers_running}/{summary.joined_workers}",
        number(amount("cpu")),
        number(amount("nvidia_gpu")),
        number(amount("memory")),
        age(now - created) if created else "-",
        last,
    )


def summary_rows(
    summaries: list[ClusterSummary], now: float, operations: dict[str, str] | None = None
) -> list[Row]:
    """The rows; `operations` maps a cluster to what this app is doing to it."""
    operations = operations or {}
    ordered = sorted(summaries, key=lambda s: s.suspended)  # suspended ones apart, last
    return [(s.name, cluster_cells(s, now, operations.get(s.name))) for s in ordered]


class ClustersTable(KeyedTable):
    COLUMNS = (
        Column("name", "CLUSTER", 32),
        Column("state", "STATE", 10),
        Column("head", "HEAD", 9),
        Column("workers", "WORKERS d/r/j", 13),
        Column("cpu", "CPU", 6),
        Column("gpu", "GPU", 4),
        Column("memory", "MEM GB", 7),
        Column("age", "AGE", 5),
        Column("operation", "OPERATION", 30),
    )
