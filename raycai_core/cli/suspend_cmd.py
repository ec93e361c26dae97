"""`raycai suspend|resume NAME`, and the wake-up of a suspended cluster before `raycai run`
and `raycai job submit` (raycai_core.cluster.suspend does the work)."""

from __future__ import annotations

import json

import click

from raycai_core.cli.options import target_options
from raycai_core.cli.output import run
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.target import Target


@click.command()
@click.argument("name")
@click.option(
    "--reason", default="suspended by hand", show_default=True, help="Shown with SUSPENDED."
)
@target_options
def suspend(target: Target, name: str, reason: str) -> None:
    """Suspend cluster NAME: its applications stop (no quota held) until `raycai resume`.

    The workers above each group's minimum are deleted, the others and the head stopped
    (CML's stop: nothing is drained). A cluster with `idle_suspend_minutes` in its spec does
    this by itself once idle. Rerunning finishes an interrupted suspend.
    """
    from raycai_core.cli.cluster_cmds import manager
    from raycai_core.cluster.suspend import suspend as suspend_cluster

    async def main() -> None:
        async with manager(target) as ops:
            await suspend_cluster(ops, name, reason=reason)

    run(main())


@click.command()
@click.argument("name")
@click.option("--wait/--no-wait", default=True, help="Wait until every node joined Ray.")
@click.option("--timeout", type=float, default=900.0, show_default=True)
@target_options
def resume(target: Target, name: str, wait: bool, timeout: float) -> None:
    """Start suspended cluster NAME again: its workers and head restart, the worker count
    (the minimum when it autoscales) is restored and its Serve config re-applied."""
    from raycai_core.cli.cluster_cmds import manager
    from raycai_core.cli.render import print_view
    from raycai_core.cluster.suspend import resume as resume_cluster

    async def main():  # type: ignore[no-untyped-def]
        async with manager(target) as ops:
            return await resume_cluster(ops, name, wait=wait, timeout=timeout)

    print_view(run(main()))


def is_suspended(target: Target, name: str) -> bool:
    """cluster.json says suspended (read without pydantic: `raycai job submit` starts fast)."""
    try:
        text = ClusterPaths(target.project_dir, name).cluster_json.read_text(encoding="utf-8")
        return json.loads(text).get("state") == "suspended"
    except (OSError, ValueError, AttributeError):
        return False


def wake(target: Target, name: str, timeout: float = 900.0) -> None:
    """Resume a suspended cluster before using it, saying so on stderr, until it is ready."""
    if target.remote or not is_suspended(target, name):
        return
    from raycai_core.cli.cluster_cmds import manager
    from raycai_core.cluster.suspend import wake_if_suspended

    async def main() -> None:
        async with manager(target, quiet=True) as ops:
            await wake_if_suspended(
                ops, name, lambda line: click.echo(line, err=True), timeout=timeout
            )

    run(main())
