"""`raycai`: run Ray clusters on CML applications from scripts and CI.

Start-up must stay fast (`raycai --help` well under 0.3 s): this module imports click only,
and each subcommand's module (which may import httpx, pydantic...) is imported on use.
"""

from __future__ import annotations

import importlib
import sys

import click

# httpx imports its own command line whenever click and rich are installed, as they are with
# raycai-tui: rich and pygments, 85 ms of CPU of every command's ~0.5 s start. raycai never
# runs it; a None in sys.modules makes that import fail, and httpx defines a stub instead.
sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]

# name -> (module, attribute, one-line help shown by `raycai --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("raycai_core.cli.cluster_cmds", "up", "Create a cluster (or converge one to its spec)."),
    "list": ("raycai_core.cli.cluster_cmds", "list_clusters", "List the project's clusters."),
    "status": ("raycai_core.cli.cluster_cmds", "status", "Show a cluster's apps and Ray nodes."),
    "scale": ("raycai_core.cli.cluster_cmds", "scale", "Set a cluster's number of workers."),
    "logs": ("raycai_core.cli.cluster_cmds", "logs", "Show or follow a node's logs."),
    "down": ("raycai_core.cli.cluster_cmds", "down", "Delete every application of a cluster."),
    "heal": ("raycai_core.cli.cluster_cmds", "heal", "Restart or replace failed workers."),
    "suspend": ("raycai_core.cli.suspend_cmd", "suspend", "Stop a cluster's apps until resumed."),
    "resume": ("raycai_core.cli.suspend_cmd", "resume", "Start a suspended cluster again."),
    "runtimes": (
        "raycai_core.cli.cluster_cmds",
        "runtimes",
        "List the workspace's runtimes (for --runtime).",
    ),
    "setup-env": (
        "raycai_core.cli.cluster_cmds",
        "setup_env",
        "Create the project virtualenv with Ray.",
    ),
    "doctor": (
        "raycai_core.cli.doctor_cmd",
        "doctor",
        "Check the workspace and project for a cluster; --fix.",
    ),
    "local": ("raycai_core.cli.local_cmds", "local", "Run the embedded local CML workspace."),
    "env": ("raycai_core.cli.work_cmds", "env", "Print the shell exports a Ray driver needs."),
    "run": ("raycai_core.cli.work_cmds", "run_command", "Run a command as a cluster's driver."),
    "dashboard": ("raycai_core.cli.work_cmds", "dashboard", "Print the Ray dashboard's URL."),
    "job": ("raycai_core.cli.work_cmds", "job", "Submit, list, follow and stop Ray Jobs."),
    "serve": ("raycai_core.cli.serve_cmds", "serve", "Deploy, show and delete Serve applications."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text without importing every subcommand's module.
        rows = [(name, entry[2]) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raycai", prog_name="raycai")
def cli() -> None:
    """Ray clusters on Cloudera AI (CML) applications.

    Credentials come from --host/--api-key/--project, then CML_HOST, CML_API_KEY and
    CML_PROJECT_ID, then (inside a CML session) CDSW_DOMAIN, CDSW_APIV2_KEY and
    CDSW_PROJECT_ID. Without any, commands use the embedded local workspace
    (see `raycai local --help`).
    """


def main(argv: list[str] | None = None) -> None:
    lighter_imports()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="raycai")


def lighter_imports() -> None:
    """Two imports that every command paid for and none uses (~65 ms of its ~0.55 s, with
    `-X importtime`): httpx imports its own command-line tool (rich, pygments) whenever rich
    is installed, as it is beside raycai-tui; pydantic scans every installed package's
    metadata for plugins at its first model. Set for this process only (the CLI's), never
    for a program that imports raycai as a library."""
    import os
    import types

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # A module without `main`: httpx's own fallback for "no CLI dependencies" applies.
    sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))


if __name__ == "__main__":
    main()
