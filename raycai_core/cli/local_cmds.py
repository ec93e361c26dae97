"""`raycai local start|status|stop|env`: the embedded local CML workspace in the background."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from raycai_core.credentials import app_url
from raycai_core.local import daemon

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RAYCAI_LOCAL_DIR",
    default=None,
    help="Where the workspace keeps its state, projects and logs "
    "[default: RAYCAI_LOCAL_DIR, else the user data dir's raycai/local].",
)


def _dir(data_dir: Path | None) -> Path:
    return (data_dir or daemon.default_data_dir()).expanduser()


def _print_status(info: dict[str, Any]) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))
    click.echo(f"url:         {info['url']}")
    app_urls = app_url(info["url"], "<subdomain>")
    click.echo(f"app urls:    {app_urls} (the API key as Bearer, or log in from a browser)")
    click.echo(f"project id:  {info['project_id']}")
    click.echo(f"project dir: {info['project_dir']}")
    click.echo(f"data dir:    {info['data_dir']}")
    click.echo(f"pid:         {info['pid']} (since {started})")
    apps = info.get("apps")
    if apps is None:
        click.echo("apps:        (the server did not answer)")
    else:
        counts = ", ".join(
            f"{n} {status.removeprefix('APPLICATION_').lower()}"
            for status, n in sorted(apps.items())
        )
        click.echo(f"apps:        {counts or 'none'}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def local() -> None:
    """The embedded local CML workspace: the CML API v2 subset raycai uses, served on
    127.0.0.1, with applications run as local processes (each on its own 127.0.0.N).

    \b
    raycai local start
    eval "$(raycai local env)"
    raycai local status
    raycai local stop
    """


@local.command()
@data_dir_option
@click.option(
    "--start-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds before each app process starts (stands for pod scheduling).",
)
@click.option("--quota-cpu", type=float, default=None, help="vCPU quota [default: no limit].")
@click.option(
    "--quota-memory", type=float, default=None, help="Memory quota in GB [default: no limit]."
)
@click.option("--quota-gpu", type=int, default=None, help="GPU quota [default: no limit].")
@click.option(
    "--restart-attempts",
    type=int,
    default=3,
    show_default=True,
    help="Platform restarts of a failed app (CML: 3).",
)
@click.option(
    "--restart-delay",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds between a failure and its platform restart (CML: 300).",
)
@click.option(
    "--refuse-dot-folders",
    is_flag=True,
    help="Fail applications whose script is in a dot-folder (e.g. .raycai/), as CML would "
    "if it refused them (not known): to test `raycai doctor` and another launcher folder.",
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the workspace to answer.",
)
def start(
    data_dir: Path | None,
    start_delay: float,
    quota_cpu: float | None,
    quota_memory: float | None,
    quota_gpu: int | None,
    restart_attempts: int,
    restart_delay: float,
    refuse_dot_folders: bool,
    timeout: float,
) -> None:
    """Start the workspace in the background (if it is not running already).

    Apps that were running when it last stopped are started again. Settings given here
    last until the workspace stops; when it already runs they are ignored.
    """
    directory = _dir(data_dir)
    args = [
        "--start-delay",
        str(start_delay),
        "--restart-attempts",
        str(restart_attempts),
        "--restart-delay",
        str(restart_delay),
    ]
    if refuse_dot_folders:
        args.append("--refuse-dot-folders")
    for flag, value in (
        ("--quota-cpu", quota_cpu),
        ("--quota-memory", quota_memory),
        ("--quota-gpu", quota_gpu),
    ):
        if value is not None:
            args += [flag, str(value)]
    try:
        _, started = daemon.start(directory, args, timeout=timeout)
    except daemon.DaemonError as exc:
        raise click.ClickException(str(exc)) from None
    info = daemon.status(directory)
    if started:
        click.echo("Local CML workspace started.")
    else:
        click.echo("Local CML workspace already running (settings given now are ignored).")
    if info is not None:
        _print_status(info)
    click.echo('Point raycai at it with: eval "$(raycai local env)"')


@local.command()
@data_dir_option
def status(data_dir: Path | None) -> None:
    """Show the workspace's URL, project, pid and app counts (exit 1 if not running)."""
    directory = _dir(data_dir)
    info = daemon.status(directory)
    if info is None:
        click.echo(f"Local CML workspace not running (data dir {directory}).")
        sys.exit(1)
    _print_status(info)


@local.command()
@data_dir_option
@click.option(
    "--timeout",
    type=float,
    default=90.0,
    show_default=True,
    help="Seconds to wait for the apps and the server to stop.",
)
def stop(data_dir: Path | None, timeout: float) -> None:
    """Stop the workspace and every app process it runs (they start again with it)."""
    directory = _dir(data_dir)
    try:
        stopped = daemon.stop(directory, timeout=timeout)
    except daemon.DaemonError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("Local CML workspace stopped." if stopped else "Local CML workspace not running.")


@local.command(short_help="Print export lines for eval (they include the API key).")
@data_dir_option
def env(data_dir: Path | None) -> None:
    """Print `export CML_HOST=... CML_API_KEY=... CML_PROJECT_ID=... RAYCAI_PROJECT_DIR=...`
    for `eval "$(raycai local env)"`. This prints the API key: only where you ask for it."""
    directory = _dir(data_dir)
    info = daemon.running_info(directory)
    if info is None:
        raise click.ClickException(
            f"the local workspace is not running (data dir {directory}); "
            "start it with `raycai local start`"
        )
    values = {
        "CML_HOST": info["url"],
        "CML_API_KEY": info["api_key"],
        "CML_PROJECT_ID": info["project_id"],
        "RAYCAI_PROJECT_DIR": info["project_dir"],
    }
    click.echo("export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in values.items()))
