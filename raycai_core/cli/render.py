"""How the CLI shows clusters: tables for people, JSON for programs."""

from __future__ import annotations

import time
from typing import Any

import click

from raycai_core.cluster import autoscaler_status
from raycai_core.cluster.autoscaler_status import AutoscalerStatus
from raycai_core.cluster.view import ClusterView, GroupCounts
from raycai_core.naming import DEFAULT_GROUP


def group_to_json(counts: GroupCounts) -> dict[str, Any]:
    """One worker group's counts; `current` (joined) and `target` (applications that exist)
    are the autoscaler's words for an autoscaled group."""
    return {
        "name": counts.name,
        "autoscale": counts.autoscale,
        "in_spec": counts.in_spec,
        "desired": counts.desired,
        "min": counts.min,
        "max": counts.max,
        "existing": counts.existing,
        "running": counts.running,
        "joined": counts.joined,
        "current": counts.joined,
        "target": counts.existing,
        "ready": counts.all_joined,
    }


def group_line(counts: GroupCounts) -> str:
    """`group gpu: 1 desired, 1 running, 1 joined`, or with the autoscaler
    `group gpu: min 0, max 4, current 1, target 2` (never a "desired" that reads like a fault)."""
    if not counts.in_spec:
        return (
            f"group {counts.name}: not in the spec, {counts.existing} worker(s) left "
            "(`raycai up` removes them)"
        )
    if counts.autoscale:
        return (
            f"group {counts.name}: min {counts.min}, max {counts.max}, "
            f"current {counts.joined}, target {counts.existing}"
        )
    return (
        f"group {counts.name}: {counts.desired} desired, {counts.running} running, "
        f"{counts.joined} joined"
    )


def workers_line(view: ClusterView) -> str:
    """The workers in the first line of status: fixed `desired, running, joined`; with
    autoscaling the summed min and the target (applications that exist), then joined."""
    if view.autoscaled:
        counts = view.groups
        low = sum(c.min for c in counts if c.in_spec)
        high = sum(c.max for c in counts if c.in_spec)
        return (
            f"workers min {low}, max {high}, target {len(view.worker_rows)}, "
            f"joined {view.workers_joined}"
        )
    return (
        f"workers desired {view.desired_workers}, running {view.workers_running}, "
        f"joined {view.workers_joined}"
    )


def view_to_json(view: ClusterView) -> dict[str, Any]:
    head = view.head
    return {
        "name": view.name,
        "state": view.desired.state if view.desired else "orphaned",
        "ready": view.ready,
        "updating": view.updating,
        "desired_workers": view.desired_workers,
        "workers_running": view.workers_running,
        "workers_joined": view.workers_joined,
        "autoscaled": view.autoscaled,
        "groups": [group_to_json(counts) for counts in view.groups],
        "head_address": head.gcs_address if head else None,
        "ray_dashboard_url": head.dashboard_url if head else None,
        "ray_client_address": head.client_address if head else None,
        "ray_error": view.ray_error,
        "ray_answered": view.ray_known,
        "remote": view.remote,  # seen from outside the project: Ray not asked
        "nodes_alive": view.nodes_alive,
        "nodes_dead": view.nodes_dead,
        "totals": None
        if view.totals is None
        else {
            "cpu": list(view.totals.cpu),
            "gpu": list(view.totals.gpu),
            "memory_bytes": list(view.totals.memory),
        },
        "nodes": [
            {
                "node": row.node,
                "role": row.role,
                "group": row.group,
                "app_id": row.app.app.id if row.app else None,
                "app_name": row.app.app.name if row.app else None,
                "app_status": row.app_status.value,
                "phase": row.phase,
                "joined": row.joined,
                "reason": view.reason(row),
                "ray_node_id": row.ray.node_id if row.ray else None,
                "ray_state": row.ray.state if row.ray else None,
                "cpu": row.app.app.cpu if row.app else None,
                "memory": row.app.app.memory if row.app else None,
                "gpu": row.app.app.nvidia_gpu if row.app else None,
                "platform_restarts": row.record.restarts if row.record else 0,
                "ray_restarts": row.record.ray_restarts if row.record else 0,
                "recoveries": [
                    {"at": r.at, "why": r.why, "state_kept": r.state_kept, "logs": r.logs}
                    for r in (row.record.recoveries if row.record else ())
                ],
            }
            for row in view.rows
        ],
    }


def print_view(view: ClusterView, autoscaler: AutoscalerStatus | None = None) -> None:
    """The cluster, one line per worker group (an autoscaled group's current and target as
    `autoscaler`, the autoscaler's status, gives them), its head, Ray and its nodes."""
    head = view.head
    ready = "READY" if view.ready else "NOT READY"
    if not view.ready and view.updating:
        ready = f"UPDATING ({view.updating})"
    if view.desired is not None and view.desired.state == "suspended":
        from raycai_core.cluster.suspend import suspended_note

        ready = f"SUSPENDED ({suspended_note(view.desired)}; `raycai resume {view.name}`)"
    click.echo(f"cluster {view.name}: {ready}  {workers_line(view)}")
    kept = {g.name: g for g in autoscaler.groups} if autoscaler is not None else {}
    # A cluster of the one default group reads as it always did: its first line says it all.
    grouped = [c.name for c in view.groups] != [DEFAULT_GROUP]
    for counts in view.groups if grouped else ():
        status = kept.get(counts.name)
        if status is not None and status.autoscale:
            click.echo(f"  group {autoscaler_status.group_line(status)}")
        else:
            click.echo(f"  {group_line(counts)}")
    if head is not None:
        click.echo(
            f"  head  {head.gcs_address}   dashboard {head.dashboard_url}   "
            f"client {head.client_address}"
        )
    if view.totals is not None:
        t = view.totals
        click.echo(
            f"  ray   {view.nodes_alive} alive, {view.nodes_dead} dead   "
            f"CPU {t.cpu[0]:g}/{t.cpu[1]:g}  GPU {t.gpu[0]:g}/{t.gpu[1]:g}  "
            f"memory {t.memory[0] / 2**30:.1f}/{t.memory[1] / 2**30:.1f} GiB"
        )
    elif view.ray_error:
        click.echo(f"  ray   unavailable: {view.ray_error}")
    elif view.remote:
        click.echo("  ray   not asked from outside the project: the launchers' records say")
    rows = [("NODE", "APP", "STATUS", "PHASE", "RAY", "CPU", "MEM", "GPU", "NOTE")]
    for row in view.rows:
        app = row.app.app if row.app else None
        rows.append(
            (
                row.node,
                app.name if app else "-",
                row.app_status.value,
                row.phase,
                row.ray.state if row.ray else "-",
                f"{app.cpu:g}" if app else "-",
                f"{app.memory:g}" if app else "-",
                f"{app.nvidia_gpu}" if app else "-",
                view.reason(row) or "",
            )
        )
    print_table(rows)
    for line in recovery_lines(view):
        click.echo(line)


def recovery_lines(view: ClusterView) -> list[str]:
    """What recovered by itself, per node: Ray restarted inside its application (the last
    time, why, and where the crashed session's logs are kept) and the platform's restarts."""
    lines = []
    for row in view.rows:
        record = row.record
        if record is None or not (record.ray_restarts or record.restarts):
            continue
        counts = []
        if record.ray_restarts:
            counts.append(f"Ray restarted in place {record.ray_restarts}x")
        if record.restarts:
            counts.append(f"application restarted by the platform {record.restarts}x")
        lines.append(f"  {row.node}: " + ", ".join(counts))
        if record.recoveries:
            last = record.recoveries[-1]
            when = time.strftime("%H:%M:%S", time.localtime(last.at))
            lines.append(f"    {when} {last.describe(row.node)}")
            if last.logs:
                lines.append(f"    the crashed session's Ray logs: {last.logs}")
        if record.serve_reapplied is not None:
            when = time.strftime("%H:%M:%S", time.localtime(record.serve_reapplied.at))
            lines.append(f"    {when} {record.serve_reapplied.describe()}")
    return lines


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
