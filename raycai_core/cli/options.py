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


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options that choose the workspace, project and project directory."""

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
        launcher_dir: str | None,
        **kwargs: Any,
    ) -> Any:
        try:  # before anything is read or written: a refused folder leaves no trace
            use_launcher_folder(launcher_dir)
        except LauncherFolderError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        try:
            target = resolve_target(
                host=host, project=project, project_dir=project_dir, local=local
            )
        except Exception as exc:  # TargetError, MissingCredentials, local start failures
            fail(str(exc), EXIT_BAD_INPUT)
        return command(target=target, **kwargs)

    return wrapper
