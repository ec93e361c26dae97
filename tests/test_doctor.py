"""`raycai doctor` on the local workspace: each check failing and passing, --fix (the shared
memory limit, after a confirmation), --json, exit codes; `raycai up` refusing with the
doctor's message and changing nothing. No real Ray: the project venv is made of files (the
doctor reads Ray's and Python's versions from its dist-info and pyvenv.cfg)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from raycai_core.atomic import atomic_write_json
from raycai_core.cli.doctor_cmd import up_project_checks
from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.preflight import (
    SLOW_STORAGE_ENV,
    check_head_autoscaler,
    check_reachability,
    check_shared_memory,
    needed_shared_memory_mb,
    refusal,
    up_checks,
)
from raycai_core.cluster.records import NodeRecord
from raycai_core.cluster.types import ClusterError
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceHandle
from raycai_core.local.state import WorkspaceState
from raycai_core.spec import load_spec_file
from tests.fixtures.workspace import RUNTIME
from tests.helpers import cli_env, raycai, raycai_argv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SPEC = f"""\
name = "demo"
[head]
cpu = 1
memory = 4
runtime_identifier = "{RUNTIME}"
[workers]
count = 1
cpu = 1
memory = 8
[ray]
search = [".venv"]
"""
AUTOSCALED = SPEC.replace("count = 1", "min = 0\nmax = 2")
CHECKS = {
    "credentials",
    "runtimes",
    "ray",
    "shared-memory",
    "quota",
    "launcher-folder",
    "workload-credentials",
}


def project_venv(project_dir: Path, ray: str = "2.60.0", python: str = "3.11.9") -> None:
    """A project venv the launchers would take: bin/ray, bin/python, pyvenv.cfg, Ray's
    dist-info (RUNTIME runs Python 3.11)."""
    venv = project_dir / ".venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("ray", "python"):
        (venv / "bin" / name).write_text("#!/bin/sh\nexit 1\n")
        (venv / "bin" / name).chmod(0o755)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion_info = {python}\n")
    (venv / "lib" / "python3.11" / "site-packages" / f"ray-{ray}.dist-info").mkdir(parents=True)


def spec_file(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def doctor(handle: WorkspaceHandle, *args: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    result = raycai(handle, "doctor", *args, "--json", check=False, **kwargs)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def project(handle: WorkspaceHandle) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {handle.api_key}"}
    url = f"{handle.url}/api/v2/projects/{handle.project_id}"
    return httpx.get(url, headers=headers, timeout=10).json()


def set_shared_memory(handle: WorkspaceHandle, mb: int) -> None:
    """The project's shared_memory_limit, as the doctor's --fix or an admin sets it."""
    headers = {"Authorization": f"Bearer {handle.api_key}"}
    url = f"{handle.url}/api/v2/projects/{handle.project_id}"
    answer = httpx.patch(url, headers=headers, json={"shared_memory_limit": mb}, timeout=10)
    answer.raise_for_status()


def apps(handle: WorkspaceHandle) -> list[dict[str, Any]]:
    return handle.apps_info()


def test_a_small_shared_memory_limit_fails_and_fix_raises_it(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = local_workspace
    project_venv(handle.project_dir)
    set_shared_memory(handle, 64)  # Kubernetes' default /dev/shm
    path = spec_file(tmp_path)
    needed = needed_shared_memory_mb(load_spec_file(path))
    assert needed == 2458  # 30 % of the largest node's 8 GB

    code, report = doctor(handle, "--file", str(path))
    assert code == 1 and report["ok"] is False
    checks = by_name(report)
    assert set(checks) == CHECKS
    assert set(checks["credentials"]) == {
        "name", "status", "found", "fix", "cluster", "fixable", "blocks_up"
    }  # fmt: skip
    shm = checks["shared-memory"]
    assert (shm["status"], shm["fixable"], shm["cluster"]) == ("fail", True, "demo")
    assert "shared_memory_limit 64 MB < 2458 MB" in shm["found"]
    assert "Ray falls back to /tmp" in shm["found"] and not shm["blocks_up"]
    assert "raycai doctor --fix" in shm["fix"]
    others = {n: c["status"] for n, c in checks.items() if n != "shared-memory"}
    assert others == {
        "credentials": "ok",
        "runtimes": "ok",
        "ray": "ok",
        "quota": "info",
        "launcher-folder": "ok",
        "workload-credentials": "ok",
    }
    assert "no quota endpoint" in checks["quota"]["found"]
    assert apps(handle) == []  # the probe application is gone
    assert not list(ClusterPaths(handle.project_dir, "x").root.parent.glob("doctor-probe-*"))

    # --fix asks first; "no" changes nothing.
    args = ("doctor", "--file", str(path), "--fix", "--no-probe")
    refused = subprocess.run(
        raycai_argv(*args), env=cli_env(handle), input="n\n", capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "affects applications started afterwards" in refused.stderr
    assert project(handle)["shared_memory_limit"] == 64

    fixed = raycai(handle, "doctor", "--file", str(path), "--fix", "--yes", check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"FIXED shared_memory_limit set to {needed} MB (was 64 MB)" in fixed.stdout
    assert project(handle)["shared_memory_limit"] == needed
    lines = [line for line in fixed.stdout.splitlines() if not line.startswith("FIXED")]
    assert len(lines) == len(CHECKS)  # one check per line
    assert any(line.startswith("OK    shared-memory [demo]") for line in lines)

    code, report = doctor(handle, "--file", str(path), "--no-probe")
    assert code == 0 and report["ok"] is True and report["shared_memory_limit"] == needed


def test_a_venv_without_ray_fails_and_up_refuses_changing_nothing(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = local_workspace
    set_shared_memory(handle, 64)
    path = spec_file(tmp_path)
    code, report = doctor(handle, "--file", str(path), "--no-probe")
    ray = by_name(report)["ray"]
    assert code == 1
    assert (ray["status"], ray["blocks_up"]) == ("fail", True)
    assert "Ray 2.60.0 not found" in ray["found"] and "no .venv/bin/ray" in ray["found"]
    assert ray["fix"].startswith("raycai setup-env --ray-version 2.60.0 --venv .venv")

    up = raycai(handle, "up", "--file", str(path), "--no-wait", check=False)
    assert up.returncode == 1
    assert "not creating demo: the cluster would fail" in up.stderr
    assert "FAIL  ray [demo]: Ray 2.60.0 not found" in up.stderr
    assert apps(handle) == []
    assert cluster_names_on_disk(handle.project_dir) == []
    assert not ClusterPaths(handle.project_dir, "demo").root.exists()
    assert project(handle)["shared_memory_limit"] == 64

    # A Ray of another version is no better; the right one passes.
    project_venv(handle.project_dir, ray="2.9.3")
    code, report = doctor(handle, "--file", str(path), "--no-probe")
    assert "(.venv: Ray 2.9.3)" in by_name(report)["ray"]["found"]
    ray_dir = handle.project_dir / ".venv" / "lib" / "python3.11" / "site-packages"
    (ray_dir / "ray-2.9.3.dist-info").rename(ray_dir / "ray-2.60.0.dist-info")
    code, report = doctor(handle, "--file", str(path), "--no-probe")
    assert by_name(report)["ray"]["status"] == "ok"


def machine_shm_mb() -> int:
    stats = os.statvfs("/dev/shm")
    return stats.f_blocks * stats.f_frsize // 2**20


def test_the_local_workspace_reports_its_dev_shm_until_the_limit_is_set(
    local_workspace: WorkspaceHandle,
) -> None:
    """What the local apps' processes really get (this machine's /dev/shm), so that a local
    `up` does not warn; a PATCH stores a value as CML does."""
    assert project(local_workspace)["shared_memory_limit"] == machine_shm_mb()
    set_shared_memory(local_workspace, 100)
    assert project(local_workspace)["shared_memory_limit"] == 100
    set_shared_memory(local_workspace, 0)
    assert project(local_workspace)["shared_memory_limit"] == 0


def test_a_state_file_from_before_keeps_no_zero_it_never_set() -> None:
    state = WorkspaceState.new("p")
    data = state.to_json()
    data["projects"][0]["shared_memory_limit"] = 0
    (loaded,) = WorkspaceState.from_json(data).projects.values()
    assert loaded.shared_memory_limit == 0  # set by a PATCH: kept
    del data["unset_shared_memory_is_null"]  # a state.json where 0 meant "never set"
    (loaded,) = WorkspaceState.from_json(data).projects.values()
    assert loaded.shared_memory_limit is None


BIG = SPEC.replace("memory = 8", "memory = 36")  # object store 30 % of 36 GB > 10 GB


def test_up_refuses_a_node_ray_would_not_start_for_want_of_shared_memory(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    """An object store above 10 GB and larger than /dev/shm: Ray refuses to start the node
    (RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE aside), so `up` refuses, creating nothing."""
    handle = local_workspace
    project_venv(handle.project_dir)
    set_shared_memory(handle, 8000)
    up = raycai(handle, "up", "--file", str(spec_file(tmp_path, BIG)), "--no-wait", check=False)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "not creating demo: the cluster would fail" in up.stderr
    assert "FAIL  shared-memory [demo]: project shared_memory_limit 8000 MB < 11060 MB" in up.stderr
    assert "Ray refuses to start group worker" in up.stderr
    assert apps(handle) == []
    assert not ClusterPaths(handle.project_dir, "demo").root.exists()
    code, report = doctor(handle, "--file", str(spec_file(tmp_path, BIG)), "--no-probe")
    shm = by_name(report)["shared-memory"]
    assert code == 1 and shm["blocks_up"] and shm["fixable"]


def test_shared_memory_below_the_object_store_warns_or_refuses() -> None:
    small = load_spec_file_text(SPEC)
    assert check_shared_memory(2458, small).status == "ok"
    below = check_shared_memory(2457, small)
    assert below.status == "fail" and not below.blocks_up and "falls back to /tmp" in below.found
    big = load_spec_file_text(BIG)
    refused = check_shared_memory(8000, big)
    assert refused.blocks_up and "group worker" in refused.found and "the head" not in refused.found
    assert SLOW_STORAGE_ENV in refused.fix
    slow_ok = load_spec_file_text(BIG + f'[env]\n{SLOW_STORAGE_ENV} = "1"\n')
    assert not check_shared_memory(8000, slow_ok).blocks_up
    assert check_shared_memory(None, small).status == "warn"
    # No spec: raycai's default 8 GB node; a larger limit passes, so --fix never lowers it.
    assert check_shared_memory(2457, None).fixable
    assert check_shared_memory(40000, None).status == "ok"


def load_spec_file_text(text: str) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return load_spec_file(spec_file(Path(directory), text))


async def test_up_warns_when_the_object_store_would_fall_back_to_tmp(
    local_workspace: WorkspaceHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`raycai up`'s read of the project (one GET before anything is created): a limit below
    the object store is a warning; enough is silent."""
    spec = load_spec_file(spec_file(tmp_path))
    async with CMLClient(local_workspace.credentials()) as cml:
        await up_project_checks(cml, spec)  # the machine's /dev/shm
        assert capsys.readouterr().err == ""
        await cml.update_project(shared_memory_limit=1000)
        await up_project_checks(cml, spec)
        err = capsys.readouterr().err
        assert err.startswith("warning: FAIL  shared-memory [demo]: project shared_memory_limit")
        assert "1000 MB < 2458 MB" in err and "raycai doctor --fix" in err
        await cml.update_project(shared_memory_limit=100)
        with pytest.raises(ClusterError, match="Ray refuses to start"):
            await up_project_checks(cml, load_spec_file(spec_file(tmp_path, BIG)))


def test_a_venv_of_another_python_than_the_runtime_fails(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    project_venv(local_workspace.project_dir, python="3.10.14")
    code, report = doctor(local_workspace, "--file", str(spec_file(tmp_path)), "--no-probe")
    ray = by_name(report)["ray"]
    assert code == 1 and ray["status"] == "fail" and not ray["blocks_up"]
    assert "runs Python 3.11" in ray["found"]


def test_missing_workload_credentials(local_workspace: WorkspaceHandle, tmp_path: Path) -> None:
    handle = local_workspace
    project_venv(handle.project_dir)
    handle.update_config(workload_key=False)
    code, report = doctor(handle, "--file", str(spec_file(tmp_path, AUTOSCALED)))
    key = by_name(report)["workload-credentials"]
    assert code == 1 and key["status"] == "fail"
    assert "no CDSW_APIV2_KEY in the applications' environment" in key["found"]
    assert "the probe application's environment" in key["found"]
    # A fixed-size cluster does without: a warning.
    code, report = doctor(handle, "--file", str(spec_file(tmp_path)))
    assert by_name(report)["workload-credentials"]["status"] == "warn"
    handle.update_config(workload_key=True)
    code, report = doctor(handle, "--file", str(spec_file(tmp_path, AUTOSCALED)))
    assert by_name(report)["workload-credentials"]["status"] == "ok"
    assert apps(handle) == []


def test_a_launcher_folder_the_workspace_refuses(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = local_workspace
    handle.update_config(refuse_dot_folder_scripts=True)
    code, report = doctor(handle, "--file", str(spec_file(tmp_path)))
    folder = by_name(report)["launcher-folder"]
    assert code == 1 and folder["status"] == "fail"
    assert "FAILED: the workspace does not run scripts from it" in folder["found"]
    assert "without a leading dot" in folder["fix"]
    assert apps(handle) == []  # the probe application is deleted
    assert by_name(report)["workload-credentials"]["status"] == "info"
    # The fix it names: a plain launcher folder, which the same workspace runs scripts from.
    env = {**cli_env(handle), "RAYCAI_DIR": "raycai-clusters"}
    args = raycai_argv("doctor", "--file", str(spec_file(tmp_path)), "--json")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    folder = by_name(json.loads(done.stdout))["launcher-folder"]
    assert folder["status"] == "ok" and "launcher folder raycai-clusters" in folder["found"]
    assert apps(handle) == []


def test_refused_credentials_an_unknown_project_and_a_missing_runtime(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    handle = local_workspace
    project_venv(handle.project_dir)
    path = str(spec_file(tmp_path))
    for variable, value, found, fix in (
        ("CML_API_KEY", "not-a-key", "the API key was refused", "CML_API_KEY"),
        ("CML_PROJECT_ID", "aaaa-bbbb-cccc-dddd", "project aaaa-bbbb-cccc-dddd not reachable",
         "CML_PROJECT_ID"),
    ):  # fmt: skip
        env = {**cli_env(handle), variable: value}
        args = raycai_argv("doctor", "--file", path, "--json")
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=110)
        assert done.returncode == 1, done.stderr
        credentials = by_name(json.loads(done.stdout))["credentials"]
        assert credentials["status"] == "fail" and found in credentials["found"]
        assert fix in credentials["fix"]
    other = spec_file(tmp_path, SPEC.replace(RUNTIME, "registry.example/no-such-runtime:1"))
    code, report = doctor(handle, "--file", str(other), "--no-probe")
    runtimes = by_name(report)["runtimes"]
    assert code == 1 and runtimes["status"] == "fail"
    assert (
        "the head's runtime registry.example/no-such-runtime:1 is not one of them"
        in (runtimes["found"])
    )
    assert "raycai runtimes" in runtimes["fix"]


def test_exit_codes_and_no_spec(local_workspace: WorkspaceHandle) -> None:
    handle = local_workspace
    unknown = raycai(handle, "doctor", "nope", check=False)
    assert unknown.returncode == 2 and "no cluster named 'nope'" in unknown.stderr
    # Without a spec: the project's clusters; none, so the shared memory is measured for a
    # cluster of raycai's default sizes.
    set_shared_memory(handle, 2458)
    code, report = doctor(handle, "--no-probe")
    checks = by_name(report)
    assert code == 0 and report["ok"] is True
    shm = checks["shared-memory"]
    assert shm["status"] == "ok" and shm["cluster"] == ""
    assert "a node of raycai's default sizes" in shm["found"]
    set_shared_memory(handle, 64)
    fixed = raycai(handle, "doctor", "--no-probe", "--fix", "--yes", check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "FIXED shared_memory_limit set to 2458 MB (was 64 MB)" in fixed.stdout
    assert checks["launcher-folder"]["status"] == "info"


def test_an_existing_cluster_whose_worker_waits_for_a_running_head(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    """`raycai doctor NAME` measures against the cluster's cluster.json, and its joins."""
    handle = local_workspace
    project_venv(handle.project_dir)
    paths = ClusterPaths(handle.project_dir, "demo")
    write_desired(paths, load_spec_file(spec_file(tmp_path)))
    now = time.time()
    for node, phase in (("head", "running"), ("worker-1", "waiting-for-head")):
        role = "head" if node == "head" else "worker"
        body = {"schema": 1, "node": node, "role": role, "phase": phase, "updated_at": now}
        atomic_write_json(paths.node_record(node), body)
    code, report = doctor(handle, "demo", "--no-probe")
    reach = by_name(report)["reachability"]
    assert code == 1 and reach["status"] == "fail" and reach["cluster"] == "demo"
    assert "worker-1 waiting for the head while it runs" in reach["found"]
    assert by_name(report)["shared-memory"]["cluster"] == "demo"
    # Without NAME: the project's clusters, this one included.
    code, report = doctor(handle, "--no-probe")
    assert by_name(report)["reachability"]["status"] == "fail"


def test_up_checks_warn_and_refuse_from_files_alone(tmp_path: Path) -> None:
    spec = load_spec_file(spec_file(tmp_path))
    root = tmp_path / "project"
    root.mkdir()
    started = time.monotonic()
    refused = up_checks(root, spec, {})
    assert refusal(refused) is not None and refused[0].blocks_up
    project_venv(root)
    assert up_checks(root, spec, {}) == []
    autoscaled = load_spec_file(spec_file(tmp_path, AUTOSCALED))
    session = {"CDSW_PROJECT_ID": "p"}  # a session without workload credentials
    (warning,) = up_checks(root, autoscaled, session)
    assert warning.name == "workload-credentials" and not warning.blocks_up
    assert refusal([warning]) is None
    assert up_checks(root, autoscaled, {**session, "CDSW_APIV2_KEY": "k"}) == []
    assert time.monotonic() - started < 5  # files only (a generous bound, not a benchmark)


def record(node: str, phase: str, now: float) -> NodeRecord:
    role = "head" if node == "head" else "worker"
    return NodeRecord(node=node, role=role, phase=phase, updated_at=now, heartbeat_s=30)


def test_reachability_from_the_launchers_records() -> None:
    now = time.time()
    head = record("head", "running", now)
    joined = check_reachability(
        "c", {"head": head, "worker-1": record("worker-1", "joined", now)}, now
    )
    assert joined.status == "ok" and "1 of 1 worker(s) joined" in joined.found
    stuck = check_reachability(
        "c",
        {
            "head": head,
            "worker-1": record("worker-1", "joined", now),
            "worker-2": record("worker-2", "waiting-for-head", now),
        },
        now,
    )
    assert stuck.status == "fail" and "cannot reach each other" in stuck.found
    assert "network policy" in stuck.fix
    down = check_reachability("c", {"head": record("head", "failed", now)}, now)
    assert down.status == "info"


def test_a_head_whose_autoscaler_found_no_workload_key() -> None:
    now = time.time()
    reason = "no CML API key in the head application's environment (CDSW_APIV2_KEY): ..."
    head = NodeRecord.from_json(
        {"node": "head", "phase": "running", "autoscaler": {"state": "off", "reason": reason}}
    )
    check = check_head_autoscaler("c", head)
    assert check is not None and check.status == "fail" and reason in check.found
    running = NodeRecord.from_json({"node": "head", "autoscaler": {"state": "running"}})
    assert check_head_autoscaler("c", running) is None
    assert check_head_autoscaler("c", record("head", "running", now)) is None
