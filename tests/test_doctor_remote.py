"""`raycai doctor` and `raycai up`'s checks from outside the project (remote mode: CML_*
set, no project directory, run elsewhere), against the local workspace's files API: the
project venv's Ray read from its files, the probe application written, read and removed
through the API, an existing cluster's joins from its downloaded records. No Ray."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from raycai_core.atomic import atomic_write_json
from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import load_spec_file
from tests.helpers import cli_env, raycai_argv
from tests.test_doctor import SPEC, by_name, project_venv, set_shared_memory, spec_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def from_laptop(handle: WorkspaceHandle, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`raycai *args` as from a laptop: CML_* set, no project directory, not in it."""
    env = cli_env(handle)
    del env["RAYCAI_PROJECT_DIR"]
    return subprocess.run(
        raycai_argv(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=110
    )


def doctor(handle: WorkspaceHandle, cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = from_laptop(handle, cwd, "doctor", *args, "--json")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    where = tmp_path / "laptop"
    where.mkdir()
    return where


def test_remote_doctor_reads_the_venv_and_probes_through_the_files_api(
    local_workspace: WorkspaceHandle, laptop: Path
) -> None:
    handle = local_workspace
    set_shared_memory(handle, 64)
    path = spec_file(laptop)  # search = [".venv"]: no PATH to fall back on
    code, report = doctor(handle, laptop, "--file", str(path))
    checks = by_name(report)
    assert code == 1
    ray = checks["ray"]
    assert (ray["status"], ray["blocks_up"]) == ("fail", True)
    assert "no .venv/bin/ray" in ray["found"]
    folder = checks["launcher-folder"]
    assert folder["status"] == "ok" and "the probe application ran" in folder["found"]
    assert checks["workload-credentials"]["status"] == "ok"
    assert checks["shared-memory"]["status"] == "fail"
    # The probe's script, its answer and the folders it made are gone; so is its application.
    assert handle.apps_info() == []
    assert not (handle.project_dir / ".raycai").exists()

    # `up` from outside refuses the same spec with the doctor's message, creating nothing.
    up = from_laptop(handle, laptop, "up", "--file", str(path), "--no-wait")
    assert up.returncode == 1, up.stdout + up.stderr
    assert "not creating demo: the cluster would fail" in up.stderr
    assert "FAIL  ray [demo]: Ray 2.60.0 not found where the launchers look" in up.stderr
    assert handle.apps_info() == []
    assert not (handle.project_dir / ".raycai").exists()

    # With the venv (read by its files: dist-info, pyvenv.cfg) and --fix: every check passes.
    project_venv(handle.project_dir)
    fixed = from_laptop(handle, laptop, "doctor", "--file", str(path), "--fix", "--yes")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "OK    ray [demo]: Ray 2.60.0 in .venv (.venv/bin/ray), Python 3.11.9" in fixed.stdout
    assert "FIXED shared_memory_limit set to 2458 MB (was 64 MB)" in fixed.stdout
    assert not (handle.project_dir / ".raycai").exists()


def test_remote_doctor_default_search_cannot_see_the_runtimes_path(
    local_workspace: WorkspaceHandle, laptop: Path
) -> None:
    """Ray on the runtime's PATH cannot be looked at from outside: a warning, and `up`
    does not refuse for it."""
    path = spec_file(laptop, SPEC.replace('search = [".venv"]', 'search = [".venv", "PATH"]'))
    code, report = doctor(local_workspace, laptop, "--file", str(path), "--no-probe")
    ray = by_name(report)["ray"]
    assert (ray["status"], ray["blocks_up"]) == ("warn", False)
    assert "PATH: the runtime's PATH cannot be read from outside the project" in ray["found"]
    assert code == 0


def test_remote_doctor_sees_a_refusing_workspace_and_an_existing_clusters_joins(
    local_workspace: WorkspaceHandle, laptop: Path
) -> None:
    handle = local_workspace
    project_venv(handle.project_dir)
    handle.update_config(refuse_dot_folder_scripts=True)
    paths = ClusterPaths(handle.project_dir, "demo")
    write_desired(paths, load_spec_file(spec_file(laptop)))
    now = time.time()
    for node, phase in (("head", "running"), ("worker-1", "waiting-for-head")):
        role = "head" if node == "head" else "worker"
        body = {"schema": 1, "node": node, "role": role, "phase": phase, "updated_at": now}
        atomic_write_json(paths.node_record(node), body)
    code, report = doctor(handle, laptop)  # the project's clusters, listed through the API
    checks = by_name(report)
    assert code == 1
    assert checks["launcher-folder"]["status"] == "fail"
    assert "the workspace does not run scripts from it" in checks["launcher-folder"]["found"]
    reach = checks["reachability"]
    assert reach["status"] == "fail" and reach["cluster"] == "demo"
    assert checks["ray"]["status"] == "ok" and checks["shared-memory"]["cluster"] == "demo"
    assert "driver-versions" not in checks  # no driver reaches the cluster from outside
    assert handle.apps_info() == []
    assert sorted(p.name for p in (handle.project_dir / ".raycai" / "clusters").iterdir()) == [
        "demo"
    ]
    unknown = from_laptop(handle, laptop, "doctor", "nope")
    assert unknown.returncode == 2 and "no cluster named 'nope'" in unknown.stderr
