"""How `raycai status` shows a cluster's autoscaler (text; the JSON is status_to_json)."""

from __future__ import annotations

from datetime import datetime

import click

from raycai_core.cluster.autoscaler_status import AutoscalerStatus, pending_text


def print_autoscaler(status: AutoscalerStatus | None) -> None:
    if status is None:
        return
    line = f"  autoscaler  {status.state}"
    if status.reason:
        line += f": {status.reason}"
    click.echo(line)
    click.echo(
        f"    workers {status.current} joined, target {status.target}, "
        f"min {status.min}, max {status.max}, idle timeout {status.idle_timeout_s:g} s; "
        f"kept by {status.kept_by}"
    )
    # Each group's min/max/current/target is on the status's own group lines, above.
    if status.pending:
        click.echo("    pending: " + "; ".join(pending_text(status, d) for d in status.pending))
    elif status.pending_error:
        click.echo(f"    pending: unknown ({status.pending_error})")
    for decision in status.decisions:
        when = datetime.fromtimestamp(decision.at).strftime("%H:%M:%S") if decision.at else "?"
        reason = f" ({decision.reason})" if decision.reason else ""
        click.echo(f"    {when} {decision.action} {decision.node}{reason}")
