"""The `raycai` CLI: light start-up, help everywhere, and bad input refused creating nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from raycai_core.cli.main import COMMANDS
from raycai_core.local import WorkspaceHandle
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cli_env, cluster_apps, raycai

pytestmark = pytest.mark.integration

HEAVY = ("textual", "ray", "httpx", "pydantic", "aiohttp")
CLI_SETTINGS = ("CML_", "CDSW_", "RAYCAI_")  # what cli_env sets or clears


def loaded_modules(code: str) -> set[str]:
    # A None entry is an import blocked on purpose (httpx's own CLI: raycai_core.cli.main).
    loaded = "sorted(n for n, m in sys.modules.items() if m is not None)"
    probe = f"{code}\nimport sys, json\nprint(json.dumps({loaded}))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_importing_the_core_and_starting_the_cli_load_neither_textual_nor_ray() -> None:
    core = loaded_modules("import raycai_core")
    assert not core & set(HEAVY)
    cli = loaded_modules(
        "import sys\nfrom raycai_core.cli.main import cli\n"
        "try:\n    cli.main(['--help'], prog_name='raycai')\nexcept SystemExit:\n    pass"
    )
    assert "textual" not in cli and "ray" not in cli
    assert not cli & set(HEAVY), "raycai --help should import click only"
    lifecycle = loaded_modules("import raycai_core.cluster.lifecycle, raycai_core.cli.cluster_cmds")
    assert "textual" not in lifecycle and "ray" not in lifecycle
    # What a command loads: httpx without its own command line (rich, pygments: ~0.1 s).
    command = loaded_modules("import raycai_core.cli.main, raycai_core.cli.cluster_cmds")
    assert "httpx" in command and not command & {"rich", "pygments"}


def test_the_module_runs_as_a_program_with_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "raycai_core.cli.main", "up", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: raycai up" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    """In this process (click's runner): a subprocess per command cost the fast tier ~1 s
    each; the program itself is started once above."""
    from click.testing import CliRunner

    from raycai_core.cli.main import cli

    result = CliRunner().invoke(cli, [command, "--help"], prog_name="raycai")
    assert result.exit_code == 0, result.output
    assert f"Usage: raycai {command}" in result.output


BAD_INVOCATIONS = [
    (["up", "Bad/Name", "--runtime", RUNTIME], "lower-case letters"),
    (["up", "a" * 200, "--runtime", RUNTIME], "at most 32 characters"),
    (["up", "demo", "--runtime", RUNTIME, "--workers", "-1"], "count must be at least 0"),
    (["up", "demo", "--runtime", RUNTIME, "--cpu", "nan"], "finite"),
    (["up", "demo", "--runtime", RUNTIME, "--cpu", "0"], "more than 0"),
    (["up", "demo", "--runtime", RUNTIME, "--memory", "1e30"], "at most 4096"),
    (["up", "demo", "--runtime", RUNTIME, "--gpu", "0.5"], "'0.5' is not a valid integer"),
    (["up", "demo", "--runtime", RUNTIME, "--env", "NOEQUALS"], "is not KEY=VALUE"),
    (["up", "demo", "--runtime", RUNTIME, "--env", "PATH=/evil"], "set by raycai or CML"),
    (["up", "demo"], "runtime_identifier is required"),
    (["up", "demo", "--runtime", RUNTIME, "--ray-version", "2.60.0;id"], "look like 2.60.0"),
    (["up", "--runtime", RUNTIME], "give the cluster a NAME"),
    (["up", "demo", "--file", "/nonexistent/spec.toml"], "does not exist"),
    (["up", "demo", "--workers", "two"], "'two' is not a valid integer"),
    (["up", "demo", "--bogus"], "No such option"),
    (["scale", "nothere", "2"], "no cluster named 'nothere'"),
    (["scale", "demo", "x"], "'x' is not a worker count"),
    (["scale", "demo", "+"], "'+' is not a worker count"),
    (["scale", "demo", "--3"], "'--3' is not a worker count"),
    (["scale", "nothere", "-1"], "no cluster named 'nothere'"),
    (["scale", "demo", "2", "--drain-timeout", "-5"], "--drain-timeout"),
    (["heal", "nothere"], "no cluster named 'nothere'"),
    (["heal", "nothere", "--watch"], "no cluster named 'nothere'"),
    (["status", "nothere"], "no cluster named 'nothere'"),
    (["logs", "nothere", "head"], "no launcher log"),
]


def raycai_here(handle: WorkspaceHandle, *args: str) -> Result:
    """raycai's CLI in this process (click's runner), in the environment a user's shell has
    for the workspace: a CLI process costs ~0.5 CPU-seconds, most of it imports, and these
    cases are about the messages, not the process (started once above)."""
    from click.testing import CliRunner

    from raycai_core.cli.main import cli

    user = cli_env(handle)
    env: dict[str, str | None] = {
        key: user.get(key) for key in {*os.environ, *user} if key.startswith(CLI_SETTINGS)
    }
    return CliRunner().invoke(cli, list(args), env=env, prog_name="raycai")


@pytest.mark.parametrize(("args", "expected"), BAD_INVOCATIONS)
def test_bad_cli_input_gets_a_specific_message_and_creates_nothing(
    idle_workspace: WorkspaceHandle, args: list[str], expected: str
) -> None:
    result = raycai_here(idle_workspace, *args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert expected in result.output
    assert asyncio.run(cluster_apps(idle_workspace)) == []
    assert not (Path(idle_workspace.project_dir) / ".raycai" / "clusters").exists() or not any(
        (Path(idle_workspace.project_dir) / ".raycai" / "clusters").iterdir()
    )


async def test_bad_spec_file_is_refused_before_anything_is_written(
    idle_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    spec = tmp_path / "cluster.toml"
    spec.write_text(
        'name = "demo"\n[head]\ncpu = "lots"\nruntime_identifier = "x"\n'
        "[workers]\ncount = -3\nsurprise = 1\n"
    )
    result = raycai(idle_workspace, "up", "--file", str(spec), check=False)
    assert result.returncode == 2
    for expected in ("head.cpu", "workers.count", "unknown setting 'surprise' in [workers]"):
        assert expected in result.stderr
    assert await cluster_apps(idle_workspace) == []
    assert not (Path(idle_workspace.project_dir) / ".raycai").exists()


def test_runtimes_are_listed(idle_workspace: WorkspaceHandle) -> None:
    result = raycai(idle_workspace, "runtimes", "--json")
    identifiers = [r["image_identifier"] for r in json.loads(result.stdout)]
    assert RUNTIME in identifiers


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--venv", "../outside"], "must stay inside the project"),
        (["--ray-version", "latest"], "must look like 2.60.0"),
        (["nothere"], "no cluster named 'nothere'"),
    ],
)
def test_setup_env_refuses_bad_input_before_installing(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "raycai_core.cli.main",
            "setup-env",
            "--project-dir",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and expected in result.stderr
    assert list(tmp_path.iterdir()) == []
