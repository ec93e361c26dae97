"""`raycai up`'s rolling update of an existing cluster: show the plan, confirm, apply."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from raycai_core.cluster.types import ClusterError

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cluster.rolling_state import UpdateStatus
    from raycai_core.spec import ClusterSpec


class NotConfirmed(ClusterError):
    pass


async def roll_if_needed(
    ops: ClusterManager,
    spec: ClusterSpec,
    *,
    restart_head: bool,
    yes: bool,
    replace_wait: float,
    drain_timeout: float,
    remote: bool,
) -> None:
    """Before `up` converges: when the spec changes a running cluster's node settings, show
    the rolling update, ask (unless --yes), and carry it out. Nothing when it needs none."""
    from raycai_core.cluster.rolling import RollingUpdate, plan_for

    plan = await plan_for(ops, spec, restart_head=restart_head)
    if plan is None:
        return
    if remote:
        raise ClusterError(
            "a rolling update runs inside the project (a session, job or application): "
            "it watches the nodes join Ray, which is not reachable from outside"
        )
    click.echo("\n".join(plan.lines()), err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise NotConfirmed(
                "the update above changes running nodes: rerun with --yes to apply it"
            )
        if not click.confirm("Apply this update?", default=False, err=True):
            raise NotConfirmed("not applied; nothing changed")
    update = RollingUpdate(
        ops,
        spec,
        restart_head=restart_head,
        replace_wait_s=replace_wait,
        drain_timeout=drain_timeout,
    )
    await update.run()


def update_json(update: UpdateStatus | None) -> dict[str, Any] | None:
    """`raycai status --json`'s `update`: the cluster's last rolling update, or None."""
    return update.to_json() if update is not None else None


def print_update(update: UpdateStatus | None) -> None:
    """`raycai status`'s lines about the cluster's last rolling update (none: nothing)."""
    if update is None:
        return
    click.echo(update.line())
    record = update.record
    if record.state != "done" and record.events:
        click.echo(f"  last: {record.events[-1]}")
