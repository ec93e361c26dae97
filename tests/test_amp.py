""".project-metadata.yaml (raycai as an AMP): the manifest's shape, then its jobs run in order
as CML runs them (a subprocess per job, from the project root, with the workload's CDSW_*
variables and the AMP's environment variables), against the local workspace, which has no
jobs API. Nothing is downloaded: pip is skipped (raycai is importable here), the project
venv's Python is a stand-in whose `pip install ray` puts the stand-in Ray
(tests/fixtures/stand_in_ray.py) where pip would, so no Ray process starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from raycai_core.cluster.preflight import needed_shared_memory_mb
from raycai_core.local import WorkspaceHandle
from raycai_core.local.config import DEFAULT_RUNTIMES
from raycai_core.spec import load_spec_file
from tests.fixtures.workspace import RUNTIME
from tests.helpers import raycai, status_json

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / ".project-metadata.yaml"
STAND_IN_RAY = REPO / "tests" / "fixtures" / "stand_in_ray.py"
NAME = "amp"
SPEC = f"""\
name = "{NAME}"

[head]
cpu = 1
memory = 1
runtime_identifier = "{RUNTIME}"

[workers]
count = 2
cpu = 1
memory = 8
"""

_NAME = {"type": "string", "minLength": 1}
_SIZE = {"type": "number", "exclusiveMinimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "description",
        "author",
        "specification_version",
        "prototype_version",
        "runtimes",
        "environment_variables",
        "tasks",
    ],
    "properties": {
        "name": _NAME,
        "description": _NAME,
        "author": _NAME,
        "date": _NAME,
        "specification_version": _NAME,
        "prototype_version": _NAME,
        "runtimes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["editor", "kernel", "edition"],
                "additionalProperties": False,
                "properties": {"editor": _NAME, "kernel": _NAME, "edition": _NAME},
            },
        },
        "environment_variables": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Z][A-Z0-9_]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["default", "description", "required"],
                "additionalProperties": False,
                "properties": {
                    "default": {"type": "string"},
                    "description": _NAME,
                    "required": {"type": "boolean"},
                },
            },
        },
        "tasks": {
            "type": "array",
            "minItems": 2,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": [
                            "type",
                            "name",
                            "entity_label",
                            "script",
                            "kernel",
                            "cpu",
                            "memory",
                            "timeout",
                            "description",
                        ],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "create_job"},
                            "name": _NAME,
                            "entity_label": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                            "script": {"type": "string", "pattern": r"^amp/[^/]+\.py$"},
                            "kernel": {"const": "python3"},
                            "cpu": _SIZE,
                            "memory": _SIZE,
                            "timeout": {"type": "integer", "minimum": 1},
                            "description": _NAME,
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "entity_label", "wait_for"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "run_job"},
                            "entity_label": _NAME,
                            "wait_for": {"const": True},
                        },
                    },
                ]
            },
        },
    },
}

# The project venv's Python: `pip install ray[...]==V` does what pip would (the stand-in Ray
# as bin/ray, Ray's dist-info) and logs the call; `-c` (a launcher asking Ray's version)
# answers 2.60.0; anything else runs this Python.
FAKE_VENV_PYTHON = """#!/bin/sh
venv="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$1" = "-c" ]; then echo 2.60.0; exit 0; fi
if [ "$1 $2 $3" = "-m pip install" ]; then
    echo "$*" >> "$venv/pip-calls.log"
    version="${{4##*==}}"
    {{ echo "#!{python}"; cat "{stand_in}"; }} > "$venv/bin/ray" && chmod 755 "$venv/bin/ray"
    mkdir -p "$venv/lib/python3.11/site-packages/ray-$version.dist-info"
    exit 0
fi
exec {python} "$@"
"""


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def jobs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The create_job tasks in the order their run_job tasks run them."""
    created = {t["entity_label"]: t for t in data["tasks"] if t["type"] == "create_job"}
    return [created[t["entity_label"]] for t in data["tasks"] if t["type"] == "run_job"]


def test_manifest_shape() -> None:
    """The fields CML's AMPs use; each create_job is run (and waited for) right after it;
    every script exists; the runtime is one CML offers (the local workspace's list)."""
    data = manifest()
    jsonschema.validate(data, SCHEMA)
    tasks = data["tasks"]
    for index, task in enumerate(tasks):
        if task["type"] == "create_job":
            assert (REPO / task["script"]).is_file(), task["script"]
            run = tasks[index + 1] if index + 1 < len(tasks) else {}
            assert run == {
                "type": "run_job",
                "entity_label": task["entity_label"],
                "wait_for": True,
            }, f"{task['entity_label']} is not run right after it is created"
    labels = [t["entity_label"] for t in tasks if t["type"] == "create_job"]
    assert len(labels) == len(set(labels))
    scripts = [job["script"] for job in jobs(data)]
    assert scripts == ["amp/1_setup_env.py", "amp/2_shared_memory.py", "amp/3_create_cluster.py"]
    assert scripts == sorted(f"amp/{p.name}" for p in (REPO / "amp").glob("[0-9]_*.py"))
    offered = {(r["editor"], r["kernel"], r["edition"]) for r in DEFAULT_RUNTIMES}
    for runtime in data["runtimes"]:
        assert (runtime["editor"], runtime["kernel"], runtime["edition"]) in offered
    variables = data["environment_variables"]
    assert set(variables) == {"RAYCAI_CLUSTER_SPEC", "RAYCAI_PACKAGE", "RAYCAI_DIR"}
    assert not any(v["required"] for v in variables.values())


def workload_env(handle: WorkspaceHandle, **amp_values: str) -> dict[str, str]:
    """A CML job's environment in this project: what the workspace gives its workloads
    (CDSW_*, HOME), and the AMP's environment variables (defaults, then the importer's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    env.update(
        CDSW_PROJECT_ID=handle.project_id,
        CDSW_PROJECT="raycai-local",
        CDSW_DOMAIN=handle.domain,
        CDSW_API_URL=f"{handle.url}/api/v1",
        CDSW_APIV2_KEY=handle.workload_key,
        HOME=str(handle.project_dir),
    )
    for name, variable in manifest()["environment_variables"].items():
        env[name] = amp_values.get(name, variable["default"])
    env["RAYCAI_AMP_SKIP_PIP"] = "1"  # raycai is importable here; pip has no network
    return env


def run_job(handle: WorkspaceHandle, script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, script],
        cwd=handle.project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    output = done.stdout + done.stderr
    print(f"--- {script} (exit {done.returncode})\n{output}")  # seen with -s
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{output}"
    return output


def shared_memory_limit(handle: WorkspaceHandle, set_to: int | None = None) -> int:
    """The project's limit (MB); `set_to` PATCHes it first (the local workspace reports its
    machine's /dev/shm until it is set; CML's projects start with their own value)."""
    headers = {"Authorization": f"Bearer {handle.api_key}"}
    url = f"{handle.url}/api/v2/projects/{handle.project_id}"
    if set_to is not None:
        body = {"shared_memory_limit": set_to}
        httpx.patch(url, headers=headers, json=body, timeout=10).raise_for_status()
    return int(httpx.get(url, headers=headers, timeout=10).json()["shared_memory_limit"])


@pytest.fixture
def amp_project(local_workspace: WorkspaceHandle) -> WorkspaceHandle:
    """The project as an AMP import leaves it: this repository's amp/ in its files; and a
    project venv that exists but holds no Ray yet (its Python is the stand-in above, so
    setup-env runs its pip instead of creating the venv)."""
    shutil.copytree(REPO / "amp", local_workspace.project_dir / "amp")
    venv = local_workspace.project_dir / ".venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_VENV_PYTHON.format(stand_in=STAND_IN_RAY, python=sys.executable))
    python.chmod(0o755)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.9\n")
    return local_workspace


def test_the_jobs_in_order_set_shared_memory_build_the_venv_and_create_the_cluster(
    amp_project: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = amp_project
    env = workload_env(handle, RAYCAI_CLUSTER_SPEC=SPEC, RAYCAI_PACKAGE=str(REPO))
    venv = handle.project_dir / ".venv"
    assert shared_memory_limit(handle, set_to=64) == 64 and not (venv / "bin" / "ray").exists()
    outputs = {job["script"]: run_job(handle, job["script"], env) for job in jobs(manifest())}

    setup = outputs["amp/1_setup_env.py"]
    assert f"pip install {REPO}: skipped" in setup  # the install step points at the source
    assert "raycai setup-env --ray-version 2.60.0 --venv .venv" in setup
    calls = (venv / "pip-calls.log").read_text().splitlines()
    assert calls == ["-m pip install ray[default,serve]==2.60.0"]
    assert "ready: launchers find Ray 2.60.0" in setup

    doctor = outputs["amp/2_shared_memory.py"]
    (tmp_path / "spec.toml").write_text(SPEC)
    needed = needed_shared_memory_mb(load_spec_file(tmp_path / "spec.toml"))
    assert needed == 2458  # 30 % of the largest node's 8 GB
    assert shared_memory_limit(handle) == needed
    assert f"FIXED shared_memory_limit set to {needed} MB (was 64 MB)" in doctor
    assert "OK    shared-memory [amp]" in doctor
    assert not [line for line in doctor.splitlines() if line.startswith(("FAIL", "WARN"))]

    status = status_json(handle, NAME)
    assert status["ready"] is True, status
    assert sorted(n["node"] for n in status["nodes"] if n["joined"]) == [
        "head",
        "worker-1",
        "worker-2",
    ]
    assert "ready" in outputs["amp/3_create_cluster.py"].lower()
    assert "shared-memory" not in outputs["amp/3_create_cluster.py"]  # `up` has no warning

    raycai(handle, "down", "--yes", NAME)
    assert handle.apps_info() == []


def test_without_a_spec_no_cluster_is_created(amp_project: WorkspaceHandle) -> None:
    """RAYCAI_CLUSTER_SPEC left empty (its default): the shared memory job sizes the limit
    for a cluster of raycai's default sizes; the last job says so and creates nothing."""
    handle = amp_project
    shared_memory_limit(handle, set_to=64)
    env = workload_env(handle)
    doctor = run_job(handle, "amp/2_shared_memory.py", env)
    needed = needed_shared_memory_mb(None)
    assert needed == 2458  # 30 % of raycai's default 8 GB node
    assert "RAYCAI_CLUSTER_SPEC is empty: the shared memory is sized for a cluster" in doctor
    assert f"FIXED shared_memory_limit set to {needed} MB (was 64 MB)" in doctor
    assert "OK    shared-memory: project shared_memory_limit 2458 MB" in doctor
    assert "a node of raycai's default sizes" in doctor
    assert shared_memory_limit(handle) == needed
    output = run_job(handle, "amp/3_create_cluster.py", workload_env(handle))
    assert "RAYCAI_CLUSTER_SPEC is empty: no cluster created" in output
    assert handle.apps_info() == []
    assert not (handle.project_dir / ".raycai").exists()


def test_a_spec_path_that_names_no_file_is_refused(amp_project: WorkspaceHandle) -> None:
    handle = amp_project
    env = workload_env(handle, RAYCAI_CLUSTER_SPEC="clusters/nothere.toml")
    done = subprocess.run(
        [sys.executable, "amp/1_setup_env.py"],
        cwd=handle.project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "RAYCAI_CLUSTER_SPEC='clusters/nothere.toml': no such file in the project" in done.stdout
    assert not (handle.project_dir / ".venv" / "pip-calls.log").exists()


def test_a_spec_file_in_the_project_sizes_the_venv(amp_project: WorkspaceHandle) -> None:
    """A spec committed to the project (an AMP fork's cluster.toml), by its path: the venv
    job installs that spec's Ray version into its venv."""
    handle = amp_project
    (handle.project_dir / "cluster.toml").write_text(SPEC + '\n[ray]\nversion = "2.61.0"\n')
    output = run_job(
        handle, "amp/1_setup_env.py", workload_env(handle, RAYCAI_CLUSTER_SPEC="cluster.toml")
    )
    assert "raycai setup-env --ray-version 2.61.0 --venv .venv" in output
    calls = (handle.project_dir / ".venv" / "pip-calls.log").read_text().splitlines()
    assert calls == ["-m pip install ray[default,serve]==2.61.0"]


def test_a_failed_install_fails_the_job(amp_project: WorkspaceHandle) -> None:
    """Without the test's skip, a job runs pip on RAYCAI_PACKAGE first; pip's failure is the
    job's, before any raycai command."""
    handle = amp_project
    env = workload_env(handle, RAYCAI_PACKAGE=str(handle.project_dir / "no-such-package"))
    del env["RAYCAI_AMP_SKIP_PIP"]
    env["PIP_NO_INDEX"] = "1"  # a path needs no index; nothing may be downloaded
    done = subprocess.run(
        [sys.executable, "amp/2_shared_memory.py"],
        cwd=handle.project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"pip could not install raycai from {handle.project_dir / 'no-such-package'}" in (
        done.stdout
    )
    assert "raycai doctor" not in done.stdout
