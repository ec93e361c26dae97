"""`raycai up|list|status|scale|logs|down|heal|runtimes|setup-env`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click

from raycai_core.cli.autoscaler_render import print_autoscaler
from raycai_core.cli.options import target_options
from raycai_core.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ProgressPrinter,
    fail,
    run,
)
from raycai_core.cli.render import format_age, print_table, print_view, view_to_json
from raycai_core.cluster.autoscaler_status import fetch_status as fetch_autoscaler_status
from raycai_core.cluster.autoscaler_status import status_to_json as autoscaler_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cluster.types import ActionsFailed, ClusterError
from raycai_core.cluster.view import ClusterView
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLAuthError, CMLError, CMLPermissionDenied
from raycai_core.spec import SpecError, load_spec_file, spec_from_flags
from raycai_core.target import Target


@asynccontextmanager
async def manager(target: Target, quiet: bool = False) -> AsyncIterator[ClusterManager]:
    """The project's manager; with a remote target, one over the files API, whose mirror of
    the project's cluster files lives in a private temporary directory for this command."""
    async with CMLClient(target.credentials) as cml, contextlib.AsyncExitStack() as stack:
        progress = ProgressPrinter(quiet=quiet)
        if target.remote:
            from raycai_core.cluster.remote import RemoteClusterManager, staging_dir

            staging = await stack.enter_async_context(staging_dir())
            ops: ClusterManager = RemoteClusterManager(cml, staging, progress=progress)
        else:
            ops = ClusterManager(cml, target.project_dir, progress=progress)
        try:
            yield ops
        finally:
            await ops.observer.aclose()


def _env_pairs(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@click.command()
@click.argument("name", required=False)
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster spec (TOML). Flags override its values.",
)
@click.option(
    "--workers", type=int, help="Number of worker nodes (the minimum with --max-workers)."
)
@click.option("--min-workers", type=int, help="Fewest workers Ray's autoscaler keeps.")
@click.option(
    "--max-workers", type=int, help="Most workers Ray's autoscaler creates (autoscaling on)."
)
@click.option(
    "--idle-timeout", type=float, help="Seconds an idle worker above the minimum is kept."
)
@click.option("--cpu", type=float, help="vCPU per worker.")
@click.option("--memory", type=float, help="Memory per worker, GB.")
@click.option("--gpu", type=int, help="NVIDIA GPUs per worker.")
@click.option("--head-cpu", type=float, help="vCPU of the head.")
@click.option("--head-memory", type=float, help="Memory of the head, GB.")
@click.option("--head-gpu", type=int, help="NVIDIA GPUs of the head.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME:key=val,...",
    help="A worker group (repeatable), instead of --workers/--cpu/--memory/--gpu: "
    "NAME:cpu=4,memory=16,gpu=1,count=2 or min=0,max=4 (autoscaled), optional "
    "accelerator=L40S, accelerator_label=<CML label id>, runtime=<image>, "
    "resource.<name>=<amount>, label.<key>=<value>.",
)
@click.option("--runtime", help="Runtime image identifier (see `raycai runtimes`).")
@click.option("--worker-runtime", help="Runtime of the workers, when not the head's.")
@click.option("--ray-version", help="Ray version the launchers require.")
@click.option(
    "--idle-suspend-minutes",
    type=float,
    help="Suspend the cluster after this many minutes with no job, task, actor or Serve "
    "application (fractions allowed; 0: never).",
)
@click.option("--env", "env", multiple=True, help="Extra environment for Ray, KEY=VALUE.")
@click.option("--wait/--no-wait", default=True, help="Wait until every node joined Ray.")
@click.option(
    "--timeout",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds to wait for the cluster.",
)
@click.option(
    "--restart-head",
    is_flag=True,
    help="Allow a rolling update to restart the head (Ray version, head size or runtime).",
)
@click.option("-y", "--yes", is_flag=True, help="Apply a rolling update without asking.")
@click.option(
    "--replace-wait",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a rolling update's new worker may wait for quota before the update stops.",
)
@target_options
def up(
    target: Target,
    name: str | None,
    spec_file: Path | None,
    env: tuple[str, ...],
    wait: bool,
    timeout: float,
    restart_head: bool,
    yes: bool,
    replace_wait: float,
    **flags: Any,
) -> None:
    """Create a cluster, or converge an existing one to its spec.

    A cluster has a head and one or more worker groups: each group is a kind of worker
    (a CPU pool, a GPU pool of one accelerator...) with its own sizes and count, or min and
    max kept by Ray's autoscaler, which picks the group whose resources fit the pending
    work. Without --group, the workers are one group named `worker`.

    \b
    raycai up demo --workers 2 --cpu 2 --memory 8 --runtime <image>
    raycai up demo --runtime <image> --group data:cpu=4,memory=16,count=2 \\
        --group gpu:cpu=8,memory=32,gpu=1,min=0,max=4,accelerator=L40S
    raycai up --file cluster.toml     ([workers.<group>] tables)

    On a running cluster, new node settings (a group's sizes or runtime, the env, Ray's
    version) are a rolling update: the plan is shown, then (asked, or --yes) each changed
    group's workers are replaced one at a time (a new one joins Ray, then an old one is
    drained and deleted). A Ray version or head change needs --restart-head.
    """
    try:
        base = load_spec_file(spec_file) if spec_file else None
        cluster_name = name or (base.name if base else None)
        if not cluster_name:
            raise click.UsageError("give the cluster a NAME, or a --file with `name = ...`")
        groups = flags.pop("groups") or None
        spec = spec_from_flags(
            name=cluster_name, base=base, env=_env_pairs(env), groups=groups, **flags
        )
    except SpecError as exc:
        fail(str(exc), EXIT_BAD_INPUT)

    async def main() -> ClusterView:
        async with manager(target) as ops:
            await up_project_checks(ops.cml, spec, remote=target.remote)
            await roll_if_needed(
                ops,
                spec,
                restart_head=restart_head,
                yes=yes,
                replace_wait=replace_wait,
                drain_timeout=60.0,
                remote=target.remote,
            )
            return await ops.up(spec, wait=wait, timeout=timeout)

    from raycai_core.cli.doctor_cmd import up_preflight, up_project_checks
    from raycai_core.cli.rolling_cmd import roll_if_needed

    exists = ClusterPaths(target.project_dir, spec.name).cluster_json.is_file()
    up_preflight(target, spec, exists=exists)
    doing = "Bringing cluster {} to this spec" if exists else "Creating cluster {}"
    click.echo(f"{doing.format(spec.name)} on {target.label}", err=True)
    view = run(main())
    print_view(view)


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@target_options
def list_clusters(target: Target, as_json: bool) -> None:
    """List the project's clusters (from the API and the project files)."""

    async def main() -> list[Any]:
        async with manager(target, quiet=True) as ops:
            return await ops.list_clusters()

    summaries = run(main())
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "head_status": s.head.app.status.value if s.head else None,
                        "workers_desired": s.desired_workers,
                        "workers_running": s.workers_running,
                        "workers_joined": s.joined_workers,
                        "cpu": s.total("cpu"),
                        "memory_gb": s.total("memory"),
                        "gpu": s.total("nvidia_gpu"),
                        "state": s.desired.state if s.desired else "orphaned",
                        **_suspension_json(s),
                    }
                    for s in summaries
                ],
                indent=2,
            )
        )
        return
    if not summaries:
        click.echo("No clusters in this project. Create one with `raycai up NAME ...`.")
        return
    rows = [("NAME", "HEAD", "WORKERS d/r/j", "CPU", "MEM GB", "GPU", "AGE")]
    for s in (s for s in summaries if not s.suspended):
        age = format_age(time.time() - s.created_at) if s.created_at else "-"
        desired = "?" if s.desired_workers is None else str(s.desired_workers)
        rows.append(
            (
                s.name,
                s.head.app.status.value if s.head else "-",
                f"{desired}/{s.workers_running}/{s.joined_workers}",
                f"{s.total('cpu'):g}",
                f"{s.total('memory'):g}",
                f"{s.total('nvidia_gpu'):g}",
                age,
            )
        )
    if len(rows) > 1:
        print_table(rows)
    _print_suspended([s for s in summaries if s.suspended])


def _suspension_json(summary: Any) -> dict[str, Any]:
    info = summary.desired.suspension if summary.suspended else None
    if info is None:
        return {}
    return {"suspended_at": info.at, "suspended_reason": info.reason, "suspended_by": info.by}


def _print_suspended(summaries: list[Any]) -> None:
    """Suspended clusters apart: their applications are stopped and hold no quota."""
    if not summaries:
        return
    from raycai_core.cluster.suspend import suspended_note

    click.echo("\nSuspended (their stopped applications hold no quota; `raycai resume NAME`):")
    rows = [("NAME", "APPS", "CPU", "MEM GB", "GPU", "SINCE")]
    for s in summaries:
        since = (suspended_note(s.desired) or "").removeprefix("suspended since ")
        rows.append(
            (
                s.name,
                f"{sum(m.app.status.value == 'stopped' for m in s.members)} stopped",
                f"{s.held('cpu'):g}",
                f"{s.held('memory'):g}",
                f"{s.held('nvidia_gpu'):g}",
                since,
            )
        )
    print_table(rows)


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds until interrupted.")
@target_options
def status(target: Target, name: str, as_json: bool, watch: bool) -> None:
    """Show a cluster's worker groups, applications, launcher phases and Ray nodes.

    One line per worker group: `group gpu: 1 desired, 1 running, 1 joined`, or for a group
    Ray's autoscaler keeps `group gpu: min 0, max 4, current 1, target 2` (current: joined
    Ray; target: the applications the autoscaler asked for).
    """

    async def main() -> None:
        async with manager(target, quiet=True) as ops:
            while True:
                view = await ops.observer.observe(name)
                if view.desired is None and not view.app_ids:
                    fail(f"no cluster named {name!r} in this project", EXIT_BAD_INPUT)
                auto = await fetch_autoscaler_status(ops.observer, ops.paths(name), view)
                if as_json:
                    data = {**view_to_json(view), "autoscaler": autoscaler_json(auto)}
                    data["update"] = update_json(view.update)
                    click.echo(json.dumps(data, indent=2))
                else:
                    if watch:
                        click.clear()
                    print_view(view, auto)
                    print_autoscaler(auto)
                    print_update(view.update)
                if not watch:
                    return
                await asyncio.sleep(2)

    from raycai_core.cli.rolling_cmd import print_update, update_json

    run(main())


class WorkerCountType(click.ParamType):
    """N (set), +K or -K (change), optionally for one group: GROUP=N|+K|-K (`-2` is a count
    argument, not an option). Converts to (group or None, ScaleTarget)."""

    name = "[GROUP=]N|+K|-K"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from raycai_core.cluster.types import ScaleTarget

        if not isinstance(value, str):
            return value
        group, equals, count = value.partition("=")
        try:
            if not equals:
                return None, ScaleTarget.parse(value)
            if not group.strip():
                raise ValueError(f"{value!r} names no group: write GROUP=N, GROUP=+K or GROUP=-K")
            return group.strip(), ScaleTarget.parse(count)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def scale_targets(items: tuple[tuple[str | None, Any], ...]) -> Any:
    """One bare target (the cluster's one group), or `{group: target}` from GROUP=... items;
    a bare target beside named ones, or a group named twice, is refused."""
    bare = [target for group, target in items if group is None]
    if bare and len(items) > 1:
        raise click.BadParameter(
            "give either one N|+K|-K (a cluster with one worker group) or GROUP=N|+K|-K "
            "for each group to scale, not both"
        )
    if bare:
        return bare[0]
    named: dict[str, Any] = {}
    for group, target in items:
        assert group is not None
        if group in named:
            raise click.BadParameter(f"group {group} is given twice")
        named[group] = target
    return named


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument(
    "counts", nargs=-1, required=True, type=WorkerCountType(), metavar="[GROUP=]N|+K|-K..."
)
@click.option("--wait/--no-wait", default=False, help="Wait until the new workers joined.")
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Grace for the tasks running on a removed worker (Ray drains it first).",
)
@click.option(
    "--refuse-busy",
    is_flag=True,
    help="Change nothing (exit 1) when a worker that runs Ray work would be removed.",
)
@target_options
def scale(
    target: Target,
    name: str,
    counts: tuple[tuple[str | None, Any], ...],
    wait: bool,
    drain_timeout: float,
    refuse_busy: bool,
) -> None:
    """Set (N) or change (+K, -K) the number of workers, per worker group.

    \b
    raycai scale demo 3           three workers (a cluster with one worker group)
    raycai scale demo +2          two more than cluster.json says now
    raycai scale demo -1          one fewer
    raycai scale demo gpu=+1 data=-1   several groups in one locked update
    A cluster with several worker groups needs GROUP=... for each group to change
    (`raycai status NAME` lists its groups). Within a group, workers go failed first, then
    not joined, idle, busy; each one in Ray is drained first (Ray schedules nothing new
    there and its running tasks get --drain-timeout seconds). With autoscaling on (a
    group's min..max), this moves the group's minimum (and its maximum when it must); the
    cluster's autoscaler adds the workers or removes idle ones.
    """
    if name.startswith("-"):
        fail(f"{name!r} is not a cluster name (options go after NAME N)", EXIT_BAD_INPUT)
    try:
        chosen = scale_targets(counts)
    except click.BadParameter as exc:
        fail(exc.message, EXIT_BAD_INPUT)

    async def main() -> None:
        async with manager(target) as ops:
            try:
                result = await ops.scale(
                    name,
                    chosen,
                    wait=wait,
                    drain_timeout=drain_timeout,
                    allow_busy=not refuse_busy,
                )
            except ActionsFailed as partly:
                _print_done(partly, {"created": "added", "removed": "removed"})
                raise
        if result.added:
            click.echo(f"added: {', '.join(result.added)}")
        if result.removed:
            click.echo(f"removed: {', '.join(result.removed)}")
        if isinstance(chosen, dict):
            for group, (before, after) in result.groups.items():
                click.echo(f"{name}: group {group}: {before} -> {after} worker(s)")
        else:
            click.echo(f"{name}: {result.before} -> {result.after} worker(s)")

    run(main())


def _print_done(partly: ActionsFailed, words: dict[str, str]) -> None:
    """What an operation did before it failed, as its success would say it (the error,
    printed next, lists each failure and its cause)."""
    for result, word in words.items():
        nodes = [d.node for d in partly.done if d.result == result]
        if nodes:
            click.echo(f"{word}: {', '.join(nodes)}")


@click.command()
@click.argument("name")
@click.argument("node", required=False)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option(
    "--all",
    "all_nodes",
    is_flag=True,
    help="Every node's launcher log, interleaved by time, each line prefixed by its node.",
)
@click.option(
    "--ray",
    "ray_file",
    metavar="FILE",
    help="A Ray log file of the node (e.g. raylet.out): from the dashboard while the node is "
    "in Ray, else from the copy its launcher kept in the project. With --all: each node's "
    "copy merged with the launcher logs.",
)
@target_options
def logs(
    target: Target,
    name: str,
    node: str | None,
    lines: int,
    follow: bool,
    all_nodes: bool,
    ray_file: str | None,
) -> None:
    """Show a node's launcher log (kept in the project), or one of its Ray logs.

    NODE defaults to head. With --all: every node's launcher log merged. A node's Ray logs
    are copied into the project as they grow, so --ray still reads them after it is gone.
    """
    if target.remote:
        if ray_file and (follow or all_nodes):
            fail(
                "from outside the project, --ray prints the copy of a node's Ray log that "
                "its launcher keeps in the project, once (no --follow, no --all); Ray's own "
                "files come from the Ray dashboard, which only the project's own workloads "
                "reach: run `raycai logs NAME NODE --ray FILE --follow` inside the project "
                "(a CML session's terminal, a job or an application)",
                EXIT_BAD_INPUT,
            )
        if ray_file:
            _remote_ray_log_copy(target, name, node or "head", ray_file, lines)
            return
        with _remote_logs(target, name, follow) as paths:
            _print_logs(target, paths, name, node, lines, follow, all_nodes, ray_file)
        return
    _print_logs(
        target,
        ClusterPaths(target.project_dir, name),
        name,
        node,
        lines,
        follow,
        all_nodes,
        ray_file,
    )


REMOTE_FOLLOW_S = 2.0  # a remote follow downloads the logs again this often
FROM_OUTSIDE = "(from outside the project: the copy, Ray not asked)"


def _remote_ray_log_copy(target: Target, name: str, node: str, filename: str, lines: int) -> None:
    """The project's copy of a node's Ray log, downloaded into a private temporary directory."""
    from raycai_core.cluster.remote import RemoteProject
    from raycai_core.cml.files import ProjectFiles

    with tempfile.TemporaryDirectory(prefix="raycai-remote-") as staging:

        async def pull() -> None:
            async with CMLClient(target.credentials) as cml:
                project = RemoteProject(ProjectFiles(cml), Path(staging))
                await project.pull_ray_log_copy(name, node, filename)

        run(pull())
        _ray_log_copy(ClusterPaths(Path(staging), name), node, filename, lines, False, FROM_OUTSIDE)


@contextlib.contextmanager
def _remote_logs(target: Target, name: str, follow: bool) -> Iterator[ClusterPaths]:
    """The cluster's launcher logs downloaded into a private temporary directory; with
    `follow`, downloaded again every REMOTE_FOLLOW_S by a thread (the copies grow in place,
    so the local follow reads only what is new)."""
    import threading

    from raycai_core.cluster.remote import RemoteProject
    from raycai_core.cml.files import ProjectFiles

    with tempfile.TemporaryDirectory(prefix="raycai-remote-") as staging:

        async def pull(logs_only: bool) -> None:
            async with CMLClient(target.credentials) as cml:
                project = RemoteProject(ProjectFiles(cml), Path(staging))
                await (
                    project.pull_logs(name)
                    if logs_only
                    else project.pull(name, logs=True, token=False)
                )

        run(pull(False))
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(REMOTE_FOLLOW_S):
                try:
                    asyncio.run(pull(True))
                except Exception as exc:  # the next round tries again
                    click.echo(f"raycai: could not download the logs: {exc}", err=True)

        refresher = threading.Thread(target=refresh, name="raycai-logs", daemon=True)
        if follow:
            refresher.start()
        try:
            yield ClusterPaths(Path(staging), name)
        finally:
            stop.set()
            if follow:
                refresher.join(timeout=REMOTE_FOLLOW_S * 5)


def _print_logs(
    target: Target,
    paths: ClusterPaths,
    name: str,
    node: str | None,
    lines: int,
    follow: bool,
    all_nodes: bool,
    ray_file: str | None,
) -> None:
    if all_nodes:
        if node is not None:
            fail(f"give a NODE ({node}) or --all, not both", EXIT_BAD_INPUT)
        _all_logs(paths, lines, follow, ray_file=ray_file)
        return
    node = node or "head"
    if ray_file:
        unavailable = run(_ray_log(target, name, node, ray_file, lines, follow))
        if unavailable is not None:
            _ray_log_copy(paths, node, ray_file, lines, follow, unavailable)
        return
    log = paths.node_log(node)
    if not log.is_file():
        known = (
            sorted(p.stem for p in paths.logs_dir.glob("*.log")) if paths.logs_dir.is_dir() else []
        )
        hint = f" (nodes with logs: {', '.join(known)})" if known else ""
        fail(f"no launcher log for {name}/{node} at {log}{hint}", EXIT_BAD_INPUT)
    from raycai_core.logtail import follow_file, read_tail, tail_lines

    if not follow:
        for line in tail_lines(log, lines):
            click.echo(line)
        return
    tail = read_tail(log, lines)  # complete lines; the follow goes on from where it stopped
    for line in tail.lines:
        click.echo(line)
    try:
        for line in follow_file(log, after=tail):
            click.echo(line)
    except KeyboardInterrupt:
        pass


NODE_COLORS = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_magenta")


def _all_logs(
    paths: ClusterPaths,
    lines: int,
    follow: bool,
    poll_s: float = 0.25,
    ray_file: str | None = None,
) -> None:
    """Print the last `lines` of all nodes' launcher logs merged by time (then follow them);
    with `ray_file`, each node's copy of that Ray log merged in."""
    from raycai_core.merged_logs import SEPARATOR, MergedLogs, NodeLine, describe, node_logs

    if not node_logs(paths.logs_dir) and not (follow and paths.root.is_dir()):
        fail(f"no launcher logs for {paths.cluster} in {paths.logs_dir}", EXIT_BAD_INPUT)
    merged = MergedLogs(paths.logs_dir, ray_file=ray_file)
    colors: dict[str, str] = {}

    def echo(batch: list[NodeLine]) -> None:
        for node in merged.nodes:  # one color per node, in node order (head first)
            colors.setdefault(node, NODE_COLORS[len(colors) % len(NODE_COLORS)])
        width = merged.width
        for line in batch:  # click drops the colors when stdout is not a terminal
            prefix = click.style(f"{line.node:<{width}}", fg=colors[line.node])
            click.echo(f"{prefix}{SEPARATOR}{line.text}")

    echo(merged.tail(lines))
    if not follow:
        return
    if not merged.nodes:
        click.echo(f"raycai: no launcher logs in {paths.logs_dir} yet; waiting for them", err=True)
    try:
        while True:
            batch = merged.read_batch()
            for note in batch.notes:
                click.echo(f"raycai: {describe(note)}", err=True)
            echo(batch.lines)
            if not batch.lines and not batch.behind:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        pass


async def _ray_log(
    target: Target, name: str, node: str, filename: str, lines: int, follow: bool
) -> str | None:
    """The node's Ray log from the dashboard while the node is alive in Ray (None); else
    why not, with nothing printed: the project's copy is read instead."""
    from raycai_core.ray.errors import RayDashboardError

    async with manager(target, quiet=True) as ops:
        try:
            view = await ops.observer.observe(name)
        except ClusterError:
            return GONE  # deleted (`raycai down`): its copies are still in the project
        row = view.row(node)
        if row is None or row.ray is None or not row.ray.alive:
            return GONE
        if view.head is None:
            return "(the head has not published its address)"
        try:
            client = await ops.observer.dashboard(name, view.head)
            if not follow:
                text = await client.tail_log(row.ray.node_id, filename, lines=lines)
                click.echo(text, nl=False)
                return None
            stream = client.stream_log(row.ray.node_id, filename, lines=lines)
            first = await stream.__anext__()
        except StopAsyncIteration:
            return None
        except RayDashboardError as exc:
            from raycai_core.ray_log_copies import unanswered_note

            return unanswered_note(exc)
        click.echo(first)
        async for line in stream:
            click.echo(line)
        return None


GONE = "gone"  # _ray_log: the node is not in Ray (scaled down, replaced, stopped, deleted)


def _ray_log_copy(
    paths: ClusterPaths, node: str, filename: str, lines: int, follow: bool, why: str = GONE
) -> None:
    """A Ray log from the copy the node's launcher kept in the project, marked as such."""
    from raycai_core import ray_log_copies
    from raycai_core.cluster.records import read_node_record
    from raycai_core.logtail import follow_file, read_tail

    copy = ray_log_copies.find(paths.logs_dir, node, filename)
    if copy is None:
        kept = ray_log_copies.files(paths.logs_dir, node)
        hint = f"; copies kept for {node}: {', '.join(kept)}" if kept else ""
        where = "" if why == FROM_OUTSIDE else f"{paths.cluster}/{node} is not in Ray and "
        fail(f"{where}the project has no copy of {node}'s {filename}{hint}", EXIT_BAD_INPUT)
    if why == GONE:
        record = read_node_record(paths, node)
        since = record.updated_at if record is not None else None
        why = ray_log_copies.gone_note(since or ray_log_copies.last_written(copy))
    click.echo(
        f"raycai: {node}'s {filename} from the project's copy (logs/{copy.relative}) {why}",
        err=True,
    )
    tail = read_tail(copy.path, lines)
    for line in tail.lines:
        click.echo(line)
    if follow:
        try:
            for line in follow_file(copy.path, after=tail):
                click.echo(line)
        except KeyboardInterrupt:
            pass


@click.command()
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@target_options
def down(target: Target, name: str, yes: bool) -> None:
    """Delete every application of a cluster (safe to rerun). Launcher logs are kept."""

    async def main() -> None:
        async with manager(target) as ops:
            members = await ops.members(name)
            if not yes:
                if not sys.stdin.isatty():
                    fail("refusing to delete without --yes when not on a terminal", EXIT_BAD_INPUT)
                listing = (
                    "\n".join(f"  {m.app.name} ({m.app.id}, {m.app.status.value})" for m in members)
                    or "  (no applications)"
                )
                click.echo(f"This deletes cluster {name}:\n{listing}")
                if not click.confirm("Delete?", default=False):
                    fail("nothing deleted", EXIT_FAILED)
            try:
                deleted = await ops.down(name)
            except ActionsFailed as partly:
                _print_done(partly, {"deleted": "deleted"})
                raise
        click.echo(
            f"{name}: deleted {len(deleted)} application(s)"
            if deleted
            else f"{name}: nothing left to delete"
        )

    run(main())


@click.command()
@click.argument("name")
@click.option("--watch", is_flag=True, help="Keep the cluster healed until interrupted (Ctrl-C).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: time between checks (longer after errors).",
)
@click.option(
    "--missing-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: a missing worker is left this long after the cluster's last change "
    "to the `up` or `scale` that creates it.",
)
@target_options
def heal(target: Target, name: str, watch: bool, interval: float, missing_grace: float) -> None:
    """Restart failed, stopped or silent nodes and recreate missing workers.

    Once, or with --watch until interrupted, by the same policy as raycai-tui's healing
    (the spec's `healing = false` turns the watch off, backing off after each attempt).
    """
    if not watch:

        async def once() -> None:
            async with manager(target) as ops:
                await _require_cluster(ops, name)
                actions = await ops.heal(name)
            if not actions:
                click.echo(f"{name}: nothing to heal")

        run(once())
        return
    click.echo(f"watching {name} (Ctrl-C stops)", err=True)
    if run(_heal_watch(target, name, interval, missing_grace)):
        click.echo(f"{name}: stopped watching", err=True)
        sys.exit(EXIT_INTERRUPTED)


async def _require_cluster(ops: ClusterManager, name: str) -> None:
    from raycai_core.cluster.desired import read_desired

    if await asyncio.to_thread(read_desired, ops.paths(name)) is None:
        fail(f"no cluster named {name!r} in this project", EXIT_BAD_INPUT)


async def _heal_watch(target: Target, name: str, interval: float, missing_grace: float) -> bool:
    """Heal `name` whenever the policy says so; True when interrupted (SIGINT or SIGTERM)."""
    import signal

    from raycai_core.cluster.healing import HealPlanner

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    planner = HealPlanner(first_wait=interval, missing_grace_s=missing_grace)
    failures = 0
    said_off = False
    try:
        async with manager(target) as ops:
            await _require_cluster(ops, name)
            while True:
                delay = interval
                try:
                    summary = next((s for s in await ops.list_clusters() if s.name == name), None)
                    if summary is None or summary.desired is None:
                        click.echo(f"{name}: the cluster is gone; nothing left to heal", err=True)
                        return False
                    if not summary.desired.spec.healing:
                        if not said_off:
                            click.echo(f"{name}: healing is off in its spec (healing = false)")
                        said_off = True
                    else:
                        said_off = False
                        now = time.time()
                        if planner.due([summary], busy=(), now=now):
                            planner.attempted(name, now)
                            view = await ops.observer.observe(
                                name, members=summary.members, with_ray=False
                            )
                            await ops.heal(name, view)  # each action is printed
                    failures = 0
                except (CMLAuthError, CMLPermissionDenied):
                    raise  # no point retrying with credentials that are refused
                except ActionsFailed as exc:  # the actions done were printed as they happened
                    if isinstance(exc.cause, (CMLAuthError, CMLPermissionDenied)):
                        raise
                    failures += 1
                    delay = min(interval * 2**failures, 300.0)
                    click.echo(f"warning: {exc}\nnext check in {delay:g} s", err=True)
                except (CMLError, ClusterError, OSError) as exc:  # transient: back off
                    failures += 1
                    delay = min(interval * 2**failures, 300.0)
                    click.echo(f"warning: {exc}; next check in {delay:g} s", err=True)
                await asyncio.sleep(delay)
    except asyncio.CancelledError:
        return True
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@target_options
def runtimes(target: Target, as_json: bool) -> None:
    """List the runtimes the workspace offers (use an image identifier with --runtime)."""

    async def main() -> list[Any]:
        async with CMLClient(target.credentials) as cml:
            return await cml.list_runtimes()

    found = run(main())
    if as_json:
        click.echo(json.dumps([r.model_dump() for r in found], indent=2))
        return
    for runtime in found:
        click.echo(f"{runtime.image_identifier}\n    {runtime.label}")


@click.command(name="setup-env")
@click.argument("name", required=False)
@click.option(
    "--ray-version",
    default=None,
    help="Ray version (default: cluster NAME's, else raycai's default).",
)
@click.option(
    "--venv",
    "venv_dir",
    default=None,
    help="Virtualenv path inside the project (default: cluster NAME's first Ray "
    "search entry, else .venv).",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory (default: RAYCAI_PROJECT_DIR, /home/cdsw in a session, else .).",
)
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="Include Ray Serve's dependencies (ray[serve]).",
)
def setup_env(
    name: str | None,
    ray_version: str | None,
    venv_dir: str | None,
    project_dir: Path | None,
    serve: bool,
) -> None:
    """Create the project virtualenv with ray[default,serve] for the launchers to use.

    With NAME, the version and place are those the cluster's launchers look for.
    """
    import os

    from raycai_core.cluster.desired import CorruptClusterFile, read_desired
    from raycai_core.spec import RAY_VERSION_RE, RaySettings
    from raycai_core.target import CML_SESSION_HOME

    if project_dir is None and os.environ.get("RAYCAI_PROJECT_DIR"):
        project_dir = Path(os.environ["RAYCAI_PROJECT_DIR"])
    root = project_dir or (CML_SESSION_HOME if CML_SESSION_HOME.is_dir() else Path.cwd())
    root = root.expanduser().resolve()
    settings = RaySettings()
    if name:
        try:
            desired = read_desired(ClusterPaths(root, name))
        except CorruptClusterFile as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        if desired is None:
            fail(f"no cluster named {name!r} in {root}", EXIT_BAD_INPUT)
        settings = desired.spec.ray
    version = (ray_version or settings.version).strip()
    if not RAY_VERSION_RE.match(version):
        fail(f"--ray-version must look like 2.60.0, not {version!r}", EXIT_BAD_INPUT)
    venvs = [entry for entry in settings.search if entry != "PATH"]
    venv = (root / (venv_dir or (venvs[0] if venvs else ".venv"))).resolve()
    if not venv.is_relative_to(root):
        fail(f"--venv must stay inside the project ({root})", EXIT_BAD_INPUT)
    python = venv / "bin" / "python"
    if not python.exists():
        click.echo(f"creating {venv}", err=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirement = f"ray[{'default,serve' if serve else 'default'}]=={version}"
    click.echo(f"installing {requirement} into {venv}", err=True)
    result = subprocess.run([str(python), "-m", "pip", "install", requirement])
    if result.returncode != 0:
        fail("pip could not install Ray (see its output above)")
    click.echo(f"ready: launchers find Ray {version} in {venv}")
