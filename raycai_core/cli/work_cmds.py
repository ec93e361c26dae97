"""`raycai env|run|dashboard|job`: use a cluster from this project (`serve`: serve_cmds).

Kept light for start-up time (`raycai job submit` is often scripted): no pydantic, no CML
client, no cluster lifecycle; the cluster is found from the project files alone, and only
`job`/`serve` load httpx.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from raycai_core.aio import run_async
from raycai_core.cli.options import target_options
from raycai_core.cli.output import EXIT_AUTH, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, fail
from raycai_core.target import Target
from raycai_core.work.access import (
    ClusterAccess,
    ClusterAccessError,
    load_access,
    local_versions,
    shell_exports,
    version_problems,
)

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient
    from raycai_core.ray.models import JobInfo
    from raycai_core.work.tracked_jobs import JobList

T = TypeVar("T")


def access_of(target: Target, name: str, *, wake: bool = False) -> ClusterAccess:
    """The cluster's head and token; `wake`: a suspended cluster is resumed first."""
    if wake:
        from raycai_core.cli.suspend_cmd import wake as wake_cluster

        wake_cluster(target, name)
    try:
        return load_access(target.project_dir, name)
    except ClusterAccessError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def run(coro: Coroutine[Any, Any, T], interrupted: str = "interrupted") -> T:
    """Run a command's coroutine; dashboard failures become messages and exit codes."""
    from raycai_core.ray.errors import (
        JobNotFound,
        JobRefused,
        RayDashboardAuthError,
        RayDashboardError,
    )
    from raycai_core.work.jobs import JobRequestError
    from raycai_core.work.packages import PackageError

    try:
        return run_async(coro)  # never waits for a stuck thread (see aio.py)
    except KeyboardInterrupt:
        fail(interrupted, EXIT_INTERRUPTED)
    except (JobRequestError, PackageError, JobNotFound, JobRefused) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except RayDashboardAuthError as exc:
        fail(str(exc), EXIT_AUTH)
    except RayDashboardError as exc:
        fail(str(exc))


def work_client(access: ClusterAccess) -> RayClient:
    from raycai_core.cluster.records import read_token
    from raycai_core.ray.client import RayClient

    return RayClient(access.dashboard_url, token=read_token(access.paths))


# -- env, run, dashboard ----------------------------------------------------------------------


def warn_versions(access: ClusterAccess) -> None:
    for problem in version_problems(access, *local_versions()):
        click.echo(click.style(f"# warning: {problem}", fg="yellow"), err=True)


@click.command()
@click.argument("name")
@target_options
def env(target: Target, name: str) -> None:
    """Print the shell exports a driver needs to use cluster NAME.

    \b
    eval "$(raycai env demo)"
    python -c 'import ray; ray.init(); print(ray.cluster_resources())'
    ray job submit -- python train.py

    The token stays in its file: only its path is printed.
    """
    access = access_of(target, name)
    warn_versions(access)
    click.echo(f"# Ray cluster {name}: drivers use RAY_ADDRESS (Ray Client), `ray job` the")
    click.echo("# dashboard; the token is read from its file (RAY_AUTH_MODE=token).")
    click.echo(shell_exports(access.environment()), nl=False)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@target_options
def run_command(target: Target, name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND with cluster NAME's driver environment (see `raycai env`).

    \b
    raycai run demo -- python driver.py --epochs 3

    The exit code is COMMAND's. A suspended cluster is resumed first.
    """
    access = access_of(target, name, wake=True)
    warn_versions(access)
    environment = {**os.environ, **access.environment()}
    environment.pop("RAY_AUTH_TOKEN", None)  # Ray would prefer it to the cluster's token file
    sys.stdout.flush()
    try:
        os.execvpe(command[0], list(command), environment)
    except OSError as exc:
        fail(f"cannot run {command[0]!r}: {exc.strerror or exc}", 127)


@click.command()
@click.argument("name")
@click.option("--token", "show_token", is_flag=True, help="Also print the cluster's Ray token.")
@target_options
def dashboard(target: Target, name: str, show_token: bool) -> None:
    """Print the URL of cluster NAME's Ray dashboard (its head application on CML).

    The dashboard asks for the cluster's Ray token before it shows anything; `--token`
    prints it (keep it secret: it grants full control of the cluster).
    """
    from raycai_core.cluster.layout import ClusterPaths
    from raycai_core.cluster.records import read_token
    from raycai_core.work.access import head_app_url

    paths = ClusterPaths(target.project_dir, name)
    if not paths.root.is_dir():
        fail(f"no cluster named {name!r} in {target.project_dir}", EXIT_BAD_INPUT)
    credentials = target.credentials
    click.echo(head_app_url(credentials.domain, credentials.project_id, name))
    if show_token:
        token = read_token(paths)
        if token is None:
            fail(f"the Ray token of {name!r} is missing ({paths.auth_token})", EXIT_BAD_INPUT)
        click.echo(token.reveal())
    else:
        click.echo("# the dashboard asks for the Ray token: `--token` prints it", err=True)


# -- jobs --------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_start(when: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-"


def first_line(text: str, limit: int = 60) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def job_json(job: JobInfo) -> dict[str, Any]:
    return asdict(job)


def print_rows(rows: list[tuple[str, ...]], red: list[bool] | None = None) -> None:
    """A table; `red[i]` colours rows[i + 1] (after the header) on a terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        if red and index and red[index - 1]:
            line = click.style(line, fg="red")
        click.echo(line)


STATUS_COLORS = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "PENDING": "yellow",
    "FAILED": "red",
    "STOPPED": "magenta",
    "LOST": "red",  # raycai's: a job a restarted head forgot (work/job_merge.py)
}


def warn_unrecorded(problem: str | None) -> None:
    if problem:
        click.echo(
            click.style(f"# warning: jobs.json not updated: {problem}", fg="yellow"), err=True
        )


@click.group()
def job() -> None:
    """Ray Jobs on a cluster: submit, list, status, logs, stop.

    \b
    raycai job submit demo --wait -- python train.py --epochs 3
    raycai job list demo
    raycai job logs demo raysubmit_XXXX --follow
    """


@job.command()
@click.argument("name")
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--wait", is_flag=True, help="Stream the logs until the job ends; exit 1 unless it succeeded."
)
@click.option(
    "--working-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Upload this directory and run the entrypoint in it (default: the project root, "
    "where the project's files already are).",
)
@click.option("--env", "env_items", multiple=True, metavar="K=V", help="Environment variable.")
@click.option("--cpus", help="CPUs reserved for the entrypoint (default: none).")
@click.option("--gpus", help="GPUs reserved for the entrypoint.")
@click.option("--memory", help="Memory reserved for the entrypoint, GB.")
@click.option("--submission-id", help="Choose the job's id (must be new).")
@target_options
def submit(
    target: Target,
    name: str,
    entrypoint: tuple[str, ...],
    wait: bool,
    working_dir: Path | None,
    env_items: tuple[str, ...],
    cpus: str | None,
    gpus: str | None,
    memory: str | None,
    submission_id: str | None,
) -> None:
    """Submit ENTRYPOINT (after `--`) as a job of cluster NAME; prints its id.

    One argument is run as a shell command line (`-- 'python a.py && python b.py'`);
    several are quoted as words. The entrypoint runs on the head, from the project root.
    """
    from raycai_core.ray.models import JobRequest
    from raycai_core.work.jobs import (
        JobRequestError,
        entrypoint_from_argv,
        parse_amount,
        parse_env,
    )

    try:
        request = JobRequest(
            entrypoint=entrypoint_from_argv(entrypoint),
            env=parse_env(env_items),
            cpus=parse_amount(cpus, "--cpus"),
            gpus=parse_amount(gpus, "--gpus"),
            memory_gb=parse_amount(memory, "--memory"),
            submission_id=submission_id,
        )
    except JobRequestError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    access = access_of(target, name, wake=True)  # a suspended cluster is resumed first

    async def main() -> int:
        from raycai_core.work import tracked_jobs

        nonlocal request
        async with work_client(access) as client:
            if working_dir is not None:
                from dataclasses import replace

                from raycai_core.work.packages import build_package

                package = await asyncio.to_thread(build_package, working_dir)
                uploaded = await client.ensure_package(package)
                verb = "uploaded" if uploaded else "already on the cluster:"
                click.echo(f"working dir {verb} {package.uri} ({package.files} files)", err=True)
                request = replace(request, working_dir_uri=package.uri)
            submitted = await tracked_jobs.submit(client, access, request)
            job_id = submitted.job_id
            click.echo(job_id)
            sys.stdout.flush()
            warn_unrecorded(submitted.unrecorded)
            if not wait:
                return 0
            return await follow_job(client, job_id, until_end=True, access=access)

    note = f"interrupted; a submitted job goes on (`raycai job stop {name} ID`)"
    sys.exit(run(main(), interrupted=note))


async def follow_job(
    client: RayClient, job_id: str, *, until_end: bool, access: ClusterAccess | None = None
) -> int:
    """Print the job's log as it is written; then its outcome. 0 when it succeeded.
    With `access`, the outcome is recorded in the cluster's ledger (jobs.json)."""
    printed = False
    async for chunk in client.tail_job_logs(job_id):
        printed = printed or bool(chunk)
        click.echo(chunk, nl=False)
    info = await client.job(job_id)
    if not printed and info.terminal:  # ended before its log could be streamed
        click.echo(await client.job_logs(job_id), nl=False)
    if not until_end:
        return 0
    while not info.terminal:  # the stream ends with the job; its status may lag a moment
        await asyncio.sleep(0.5)
        info = await client.job(job_id)
    if access is not None:
        from raycai_core.work import tracked_jobs

        warn_unrecorded(await tracked_jobs.seen(access, [info]))
    color = STATUS_COLORS.get(info.status)
    summary = f"job {job_id} {click.style(info.status, fg=color, bold=True)}"
    if info.status != "SUCCEEDED" and info.message:
        summary += f": {first_line(info.message, 300)}"
    click.echo(summary, err=True)
    return 0 if info.status == "SUCCEEDED" else EXIT_FAILED


@job.command(name="list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Also drivers that connected themselves.")
@target_options
def list_jobs(target: Target, name: str, as_json: bool, show_all: bool) -> None:
    """List the jobs of cluster NAME, newest first.

    Jobs raycai submitted that Ray no longer knows (a head that restarted without its state)
    are listed from raycai's record (jobs.json): LOST when last seen not finished.
    """
    access = access_of(target, name)

    async def main() -> JobList:
        from raycai_core.work import tracked_jobs

        async with work_client(access) as client:
            return await tracked_jobs.list_jobs(client, access)

    from raycai_core.ray.models import LOST

    listed = run(main())
    warn_unrecorded(listed.unrecorded)
    jobs = [j for j in listed.jobs if show_all or j.is_submission]
    if as_json:
        click.echo(json.dumps([job_json(j) for j in jobs], indent=2))
        return
    if not jobs:
        click.echo(f"No jobs on {name}. Submit one with `raycai job submit {name} -- CMD`.")
        return
    rows = [("ID", "STATUS", "START", "DURATION", "ENTRYPOINT", "MESSAGE")]
    for j in jobs:
        rows.append(
            (
                j.id,
                j.status,
                format_start(j.start_time),
                format_duration(j.duration()),
                first_line(j.entrypoint, 50),
                first_line(j.message, 80 if j.status == LOST else 60),
            )
        )
    print_rows(rows, red=[j.status == LOST for j in jobs])


@job.command()
@click.argument("name")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@target_options
def status(target: Target, name: str, job_id: str, as_json: bool) -> None:
    """Show one job of cluster NAME; exit 1 when it is LOST (a restarted head forgot it)."""
    access = access_of(target, name)

    async def main() -> JobInfo:
        from raycai_core.work import tracked_jobs

        async with work_client(access) as client:
            return await tracked_jobs.job(client, access, job_id)

    from raycai_core.ray.models import LOST

    info = run(main())
    lost = EXIT_FAILED if info.status == LOST else 0
    if as_json:
        click.echo(json.dumps(job_json(info), indent=2))
        sys.exit(lost)
    click.echo(f"id:          {info.id}")
    click.echo(f"status:      {click.style(info.status, fg=STATUS_COLORS.get(info.status))}")
    click.echo(f"entrypoint:  {info.entrypoint}")
    click.echo(f"started:     {format_start(info.start_time)}")
    click.echo(f"duration:    {format_duration(info.duration())}")
    if info.driver_exit_code is not None:
        click.echo(f"exit code:   {info.driver_exit_code}")
    if info.message:
        click.echo(f"message:     {info.message.rstrip()}")
    sys.exit(lost)


@job.command()
@click.argument("name")
@click.argument("job_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@target_options
def logs(target: Target, name: str, job_id: str, follow: bool) -> None:
    """Print the logs of a job of cluster NAME."""
    access = access_of(target, name)

    async def main() -> int:
        async with work_client(access) as client:
            if follow:
                return await follow_job(client, job_id, until_end=False)
            click.echo(await client.job_logs(job_id), nl=False)
            return 0

    sys.exit(run(main()))


@job.command()
@click.argument("name")
@click.argument("job_id", metavar="ID")
@target_options
def stop(target: Target, name: str, job_id: str) -> None:
    """Stop a job of cluster NAME (Ray sends its entrypoint SIGTERM, then SIGKILL)."""
    access = access_of(target, name)

    async def main() -> bool:
        async with work_client(access) as client:
            return await client.stop_job(job_id)

    stopped = run(main())
    click.echo(f"{job_id}: stop requested" if stopped else f"{job_id}: had already ended")
