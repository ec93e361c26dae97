"""The jobs/Serve client and the `raycai job|serve|env|dashboard` commands against a stand-in
Ray 2.60 dashboard (tests/fake_dashboard.py), including its bad answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import (
    JobNotFound,
    JobRefused,
    RayDashboardAuthError,
    RayDashboardError,
    RayDashboardServerError,
    RayDashboardUnreachable,
    ServeNotInstalled,
)
from raycai_core.ray.models import JobRequest
from raycai_core.work.packages import build_package
from tests.fake_dashboard import TOKEN, FakeDashboard, job, running_dashboard, serve_running

pytestmark = pytest.mark.integration


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        fake.jobs["raysubmit_1"] = job("raysubmit_1", "SUCCEEDED", "python a.py")
        fake.jobs["raysubmit_2"] = job("raysubmit_2", "RUNNING", "sleep 100")
        fake.logs["raysubmit_1"] = "line one\nline two\npartial"
        yield fake


async def test_jobs_round_trip(dash: FakeDashboard) -> None:
    async with RayClient(dash.url, token=TOKEN) as client:
        jobs = await client.list_jobs()
        assert {j.id for j in jobs} == {"raysubmit_1", "raysubmit_2"}
        job_id = await client.submit_job(JobRequest("echo hi", env={"A": "1"}, cpus=1))
        assert dash.submitted[-1] == {
            "entrypoint": "echo hi",
            "runtime_env": {"env_vars": {"A": "1"}},
            "entrypoint_num_cpus": 1,
        }
        assert (await client.job(job_id)).status == "PENDING"
        assert await client.stop_job("raysubmit_2") is True
        assert await client.stop_job("raysubmit_1") is False
        assert await client.job_logs("raysubmit_1") == "line one\nline two\npartial"
        chunks = [chunk async for chunk in client.tail_job_logs("raysubmit_1")]
        assert "".join(chunks) == "line one\nline two\npartial"
    # A CLI must not look like a browser: Ray lets those only GET.
    assert ("POST", "/api/jobs/") in dash.requests


async def test_job_errors_name_the_problem(dash: FakeDashboard) -> None:
    async with RayClient(dash.url, token=TOKEN) as client:
        with pytest.raises(JobNotFound, match="Job nope does not exist"):
            await client.job("nope")
        with pytest.raises(JobNotFound):
            [c async for c in client.tail_job_logs("nope")]
        with pytest.raises(JobRefused, match="entrypoint must be a string"):
            await client.submit_job(JobRequest(entrypoint=1))  # type: ignore[arg-type]
        dash.faults["/api/jobs/"] = 503
        with pytest.raises(RayDashboardServerError, match="GCS unavailable") as caught:
            await client.list_jobs()
        assert "Traceback" not in str(caught.value)
        dash.faults["/api/jobs/"] = "junk"
        with pytest.raises(RayDashboardError, match="Unexpected answer"):
            await client.list_jobs()
        dash.faults["/api/jobs/"] = "partial"
        partial = await client.list_jobs()
        assert {j.id for j in partial} == {"raysubmit_1", "raysubmit_2"}
        assert {j.status for j in partial} == {"UNKNOWN"}
    async with RayClient(dash.url) as client:
        with pytest.raises(RayDashboardAuthError, match="requires a Ray token"):
            await client.list_jobs()
        with pytest.raises(RayDashboardAuthError):
            [c async for c in client.tail_job_logs("raysubmit_1")]
    async with RayClient(dash.url, token="wrong") as client:
        with pytest.raises(RayDashboardAuthError, match="not this cluster's token") as caught:
            await client.serve_status()
        assert "wrong" not in str(caught.value)


async def test_unreachable_dashboard() -> None:
    async with running_dashboard() as fake:
        url = fake.url
    async with RayClient(url, token=TOKEN, timeout=2.0) as client:
        with pytest.raises(RayDashboardUnreachable, match="Cannot reach"):
            await client.list_jobs()
        with pytest.raises(RayDashboardUnreachable, match="Cannot reach"):
            [c async for c in client.tail_job_logs("x")]


async def test_serve_states(dash: FakeDashboard) -> None:
    async with RayClient(dash.url, token=TOKEN) as client:
        assert not (await client.serve_status()).running
        dash.serve = serve_running()
        state = await client.serve_status()
        assert state.applications[0].deployments[0].replicas == {"RUNNING": 2}
        dash.faults["/api/serve/applications/"] = "partial"
        assert (await client.serve_status()).applications[0].status == "UNKNOWN"
        dash.faults.clear()
        dash.serve = None
        with pytest.raises(ServeNotInstalled, match=r"lacks ray\[serve\]"):
            await client.serve_status()


async def test_working_dir_is_uploaded_once(dash: FakeDashboard, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    package = build_package(tmp_path)
    async with RayClient(dash.url, token=TOKEN) as client:
        assert await client.ensure_package(package) is True
        assert await client.ensure_package(package) is False
    assert dash.packages == {package.name: package.data}


# -- the CLI against the stand-in -----------------------------------------------------------------


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAY"))}
    env.update(CML_HOST="https://ml.example.com", CML_API_KEY="k", CML_PROJECT_ID="proj-1")
    env["RAYCAI_PROJECT_DIR"] = str(project)
    return subprocess.run(
        [sys.executable, "-m", "raycai_core.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def publish_fake(project: Path, dash: FakeDashboard, **head: str) -> ClusterPaths:
    paths = ClusterPaths(project, "demo")
    paths.root.mkdir(parents=True)
    port = int(dash.url.rsplit(":", 1)[1])
    record = {"ip": "127.0.0.1", "gcs_port": 1, "dashboard_port": port, "client_port": 2}
    record.update({"ray_version": "2.60.0", "python_version": "3.11.7", **head})
    paths.head_json.write_text(json.dumps(record))
    paths.auth_token.write_text(TOKEN)
    paths.auth_token.chmod(0o600)
    return paths


async def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, project, *args)


async def test_cli_jobs(dash: FakeDashboard, tmp_path: Path) -> None:
    publish_fake(tmp_path, dash)
    listed = await run_cli(tmp_path, "job", "list", "demo")
    assert listed.returncode == 0, listed.stderr
    assert "raysubmit_1" in listed.stdout and "SUCCEEDED" in listed.stdout
    as_json = json.loads((await run_cli(tmp_path, "job", "list", "demo", "--json")).stdout)
    assert {j["id"] for j in as_json} == {"raysubmit_1", "raysubmit_2"}

    submitted = await run_cli(
        tmp_path, "job", "submit", "demo", "--env", "A=1", "--memory", "2", "--", "echo", "a b"
    )
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() in dash.jobs
    assert dash.submitted[-1]["entrypoint"] == "echo 'a b'"
    assert dash.submitted[-1]["entrypoint_memory"] == 2 * 2**30

    bad = await run_cli(tmp_path, "job", "submit", "demo", "--cpus", "lots", "--", "x")
    assert bad.returncode == 2 and "--cpus: 'lots' is not a number" in bad.stderr
    missing = await run_cli(tmp_path, "job", "status", "demo", "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    logs = await run_cli(tmp_path, "job", "logs", "demo", "raysubmit_1", "--follow")
    assert logs.stdout == "line one\nline two\npartial"
    stopped = await run_cli(tmp_path, "job", "stop", "demo", "raysubmit_2")
    assert "stop requested" in stopped.stdout
    dash.faults["/api/jobs/"] = 500
    failed = await run_cli(tmp_path, "job", "list", "demo")
    assert failed.returncode == 1 and "GCS unavailable" in failed.stderr


async def test_cli_wait_exits_with_the_outcome(tmp_path: Path) -> None:
    fake = FakeDashboard()
    submit = fake.submit

    async def submit_failing(request):  # type: ignore[no-untyped-def]
        response = await submit(request)
        job_id = json.loads(response.text)["submission_id"]
        fake.jobs[job_id].update(status="FAILED", message="exit code 3")
        fake.logs[job_id] = "boom\n"
        return response

    fake.submit = submit_failing  # type: ignore[method-assign]
    async with running_dashboard(fake):
        publish_fake(tmp_path, fake)
        waited = await run_cli(tmp_path, "job", "submit", "demo", "--wait", "--", "false")
        followed = await run_cli(tmp_path, "job", "logs", "demo", waited.stdout.split()[0], "-f")
    assert waited.returncode == 1
    assert "boom" in waited.stdout and "FAILED" in waited.stderr and "exit code 3" in waited.stderr
    assert followed.returncode == 0 and followed.stdout == "boom\n"  # logs do not judge


async def test_cli_serve(dash: FakeDashboard, tmp_path: Path) -> None:
    publish_fake(tmp_path, dash)
    assert "Serve is not running" in (await run_cli(tmp_path, "serve", "demo")).stdout
    dash.serve = serve_running(status="UNHEALTHY")
    table = (await run_cli(tmp_path, "serve", "demo")).stdout
    assert f"{dash.url}/serve/hello" in table and "UNHEALTHY" in table
    assert "replica died: ValueError" in table
    state = json.loads((await run_cli(tmp_path, "serve", "demo", "--json")).stdout)
    assert state["applications"][0]["deployments"][0]["replicas"] == {"RUNNING": 2}
    dash.serve = None
    lacking = await run_cli(tmp_path, "serve", "demo")
    assert lacking.returncode == 1 and "lacks ray[serve]" in lacking.stderr


async def test_cli_env_and_dashboard(dash: FakeDashboard, tmp_path: Path) -> None:
    publish_fake(tmp_path, dash, ray_version="2.9.0", python_version="3.9.1")
    env = await run_cli(tmp_path, "env", "demo")
    assert env.returncode == 0 and TOKEN not in env.stdout + env.stderr
    assert "export RAY_AUTH_MODE=token" in env.stdout
    assert "# warning:" in env.stderr and "Ray 2.9.0" in env.stderr and "3.9.1" in env.stderr
    url = await run_cli(tmp_path, "dashboard", "demo")
    assert url.stdout.startswith("https://ray-demo-") and ".ml.example.com" in url.stdout
    assert TOKEN not in url.stdout + url.stderr
    with_token = await run_cli(tmp_path, "dashboard", "demo", "--token")
    assert with_token.stdout.splitlines()[1] == TOKEN
    unknown = await run_cli(tmp_path, "env", "nope")
    assert unknown.returncode == 2 and "no cluster named 'nope'" in unknown.stderr
