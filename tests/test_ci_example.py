"""examples/ci/github-actions.yml: its shape, and its commands run as its runner would, from
a directory that is not the project, against the local workspace (stand-in Ray: the test is
about the workflow and remote mode, not about Ray)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raycai_core.local import WorkspaceHandle
from tests.fixtures.workspace import RUNTIME
from tests.tui.support import fake_ray

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WORKFLOW = Path(__file__).parent.parent / "examples" / "ci" / "github-actions.yml"
SECRETS = ("CML_HOST", "CML_API_KEY", "CML_PROJECT_ID")
CLUSTER_TOML = f"""
name = "ci"

[head]
cpu = 1
memory = 1
runtime_identifier = "{RUNTIME}"

[workers]
count = 2
cpu = 1
memory = 1
"""


def load() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def job_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def runs(step: dict[str, Any], action: str) -> bool:
    """The step's `if:` for this dispatch (the few expressions the example uses)."""
    condition = str(step.get("if", "success()"))
    python = (
        condition.replace("&&", " and ")
        .replace("||", " or ")
        .replace("always()", "True")
        .replace("success()", "True")
        .replace("inputs.action", repr(action))
    )
    assert re.fullmatch(r"[\w\s'=()!]+", python), (
        f"an expression this test cannot read: {condition}"
    )
    return bool(eval(python))


def test_workflow_shape() -> None:
    """Dispatched by hand (up or down), the three CML_* secrets, raycai installed, then the
    remote commands."""
    workflow = load()
    assert set(workflow[True]) == {"workflow_dispatch"}  # YAML 1.1 reads `on` as True
    options = workflow[True]["workflow_dispatch"]["inputs"]["action"]["options"]
    assert options == ["up", "down"]
    for name in SECRETS:
        assert workflow["env"][name] == "${{ secrets." + name + " }}"
    commands = [step.get("run", "") for step in job_steps(workflow)]
    assert any(c.startswith("pip install") for c in commands)
    raycai = [c for c in commands if c.startswith("raycai ")]
    assert raycai[0] == "raycai up --remote --file cluster.toml"
    assert all("--remote" in c for c in raycai)


def test_workflow_commands_against_the_local_workspace(
    fake_ray: WorkspaceHandle, tmp_path: Path
) -> None:
    """Each `run:` step in order, as the runner runs it (bash -e, the job's env with the
    secrets, $GITHUB_ENV between steps), from a checkout that is not the project: up, then
    down. The install step is checked, not run (pip has no network here)."""
    handle = fake_ray
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "cluster.toml").write_text(CLUSTER_TOML)
    assert handle.project_dir not in checkout.parents and checkout != handle.project_dir
    workflow = load()
    secrets = {"CML_HOST": handle.url, "CML_API_KEY": handle.api_key}
    secrets["CML_PROJECT_ID"] = handle.project_id
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    for key, value in workflow["env"].items():
        match = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
        base[key] = secrets[match.group(1)] if match else str(value)

    outputs: dict[str, str] = {}
    for action in ("up", "down"):
        github_env = tmp_path / f"github-env-{action}"
        github_env.write_text("")
        env = dict(base, GITHUB_ENV=str(github_env))
        for step in job_steps(workflow):
            command = step.get("run")
            if command is None or not runs(step, action):
                continue
            if command.startswith("pip install"):
                assert '"$RAYCAI_PACKAGE"' in command and "raycai" in env["RAYCAI_PACKAGE"]
                continue
            done = subprocess.run(
                ["bash", "-e", "-c", command],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, f"{step['name']}: {command}\n{done.stdout}{done.stderr}"
            outputs[f"{action}: {step['name']}"] = done.stdout + done.stderr
            print(f"$ {command}\n{done.stdout}{done.stderr}")  # seen with -s
            for line in github_env.read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
        if action == "up":
            assert env["CLUSTER"] == "ci"
    created = outputs["up: Create or converge the cluster"]
    assert "remote" in created and "ci" in created
    status = outputs["up: Status"]
    assert "READY" in status and "worker-2" in status and "not asked" in status
    logs = outputs["up: Launcher logs"]
    assert "worker-1" in logs and "worker-2" in logs
    assert "deleted 3 application(s)" in outputs["down: Delete the cluster"]
    # Nothing landed in the checkout; the project keeps the logs, no `(1)` copies.
    assert sorted(p.name for p in checkout.iterdir()) == ["cluster.toml"]
    copies = [p for p in handle.project_dir.rglob("*(*)*") if ".venv" not in p.parts]
    assert not copies
    assert handle.apps_info() == []
