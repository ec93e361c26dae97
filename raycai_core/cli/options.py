"""Options every command that works on a project shares (light: click and the target)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from raycai_core.cli.output import EXIT_BAD_INPUT, fail
from raycai_core.cluster.layout import LauncherFolderError, use_launcher_folder
from raycai_core.target import resolve_target

# The commands that work from outside the project (its files through the API v2).
REMOTE_COMMANDS = frozenset(
    f"raycai_core.cli.cluster_cmds.{name}"
    for name in ("up", "list_clusters", "status", "logs", "down")
) | {"raycai_core.cli.doctor_cmd.doctor"}
# Those whose work needs the Ray head's address (the rest: the project's lock and drains).
NEEDS_RAY = ("env", "run", "dashboard", "job", "serve")


def remote_refusal(command_path: str) -> str:
    """Why a command does not run from outside the project, and where it does."""
    words = command_path.split()
    command = " ".join(words[1:]) or command_path
    where = (
        "run it inside the project: in a CML session's terminal, or as a CML job or "
        f"application whose script runs `raycai {command} ...`"
    )
    if words[1:2] and words[1] in NEEDS_RAY:
        return (
            f"`raycai {command}` needs the Ray head's address, which only the project's own "
            f"workloads reach (the project's files are not here: remote mode): {where}"
        )
    return (
        f"`raycai {command}` works on the project's files on disk (the project's lock, drain "
        f"requests), which are not here (remote mode): {where}. From outside, `raycai up` "
        "with the new spec converges the cluster, and `raycai status|logs|down` work"
    )


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options that choose the workspace, project and project directory."""
    remote_ok = f"{command.__module__}.{command.__name__}" in REMOTE_COMMANDS

    @click.option("--host", envvar=None, help="CML workspace URL (else CML_HOST / CDSW_DOMAIN).")
    @click.option("--project", help="Project id (else CML_PROJECT_ID / CDSW_PROJECT_ID).")
    @click.option(
        "--project-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="The project's files (default: /home/cdsw in a session; RAYCAI_PROJECT_DIR).",
    )
    @click.option(
        "--local/--no-local",
        default=None,
        help="Use the embedded local workspace (default: when no credentials are set).",
    )
    @click.option(
        "--remote/--no-remote",
        default=None,
        help="The project's files through the API v2 (from a laptop or CI; default: when "
        "CML_* credentials are set and no project directory is given or found).",
    )
    @click.option(
        "--dir",
        "launcher_dir",
        metavar="FOLDER",
        help="The launcher folder at the project root (default .raycai; RAYCAI_DIR), e.g. "
        "raycai-clusters.",
    )
    @functools.wraps(command)
    def wrapper(
        host: str | None,
        project: str | None,
        project_dir: Path | None,
        local: bool | None,
        remote: bool | None,
        launcher_dir: str | None,
        **kwargs: Any,
    ) -> Any:
        try:  # before anything is read or written: a refused folder leaves no trace
            use_launcher_folder(launcher_dir)
        except LauncherFolderError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        try:
            target = resolve_target(
                host=host, project=project, project_dir=project_dir, local=local, remote=remote
            )
        except Exception as exc:  # TargetError, MissingCredentials, local start failures
            fail(str(exc), EXIT_BAD_INPUT)
        if target.remote and not remote_ok:
            fail(remote_refusal(click.get_current_context().command_path), EXIT_BAD_INPUT)
        return command(target=target, **kwargs)

    return wrapper
