"""No job silently lost (issue 18, item 5): raycai's ledger of the jobs it submitted
(jobs.json), THE merge rule with Ray's job list (pure), and `raycai job submit|list|status`
against a stand-in Ray 2.60 dashboard whose head restarts without its state."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.ray.models import LOST, TERMINAL, JobInfo
from raycai_core.work.job_merge import RECORD_NOTE, clock, merge_jobs
from raycai_core.work.ledger import (
    MAX_ENTRIES,
    REFRESH_S,
    LedgerEntry,
    read_ledger,
    record_seen,
    record_submission,
)
from tests.fake_dashboard import TOKEN, FakeDashboard, job, running_dashboard
from tests.test_work_client import run_cli

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0  # submissions
RESTART = T0 + 3600.0  # the new head's start


def entry(job_id: str, status: str, incarnation: str = "old", **more: object) -> LedgerEntry:
    fields: dict = dict(
        id=job_id,
        entrypoint=f"python {job_id}.py",
        submitted_at=T0,
        head_incarnation=incarnation,
        status=status,
        message=f"{status.lower()} message",
        last_seen_at=T0 + 60,
    )
    fields.update(more)
    return LedgerEntry(**fields)


def ray_job(job_id: str, status: str, message: str = "", start: float = T0) -> JobInfo:
    return JobInfo(job_id, "SUBMISSION", status, "python x.py", message, submission_id=job_id,
                   start_time=start)  # fmt: skip


# -- the merge rule (pure) ---------------------------------------------------------------------


def test_ray_decides_for_every_job_it_lists() -> None:
    # The head kept its state: the driver died with the head, Ray says so itself.
    died = ray_job("a", "FAILED", "Job supervisor actor died: the node was restarted")
    merged = merge_jobs([died], [entry("a", "RUNNING")], "new", RESTART)
    assert merged == [died]


def test_a_running_job_the_restarted_head_forgot_is_lost() -> None:
    merged = merge_jobs([], [entry("a", "RUNNING"), entry("p", "PENDING")], "new", RESTART)
    assert {j.id: j.status for j in merged} == {"a": LOST, "p": LOST}
    lost = next(j for j in merged if j.id == "a")
    assert lost.message == (
        f"lost when the head restarted at {clock(RESTART)} (last seen RUNNING at {clock(T0 + 60)})"
    )
    assert lost.terminal and lost.is_submission and lost.entrypoint == "python a.py"
    assert lost.duration() == 60.0  # submitted until last seen, not growing


def test_a_finished_job_ray_forgot_shows_its_last_status_from_the_record() -> None:
    merged = merge_jobs([], [entry("ok", "SUCCEEDED"), entry("bad", "FAILED")], "new", RESTART)
    assert {j.id: j.status for j in merged} == {"ok": "SUCCEEDED", "bad": "FAILED"}
    assert all(j.message.startswith(RECORD_NOTE) for j in merged)
    assert merged[0].message.endswith("message")


def test_a_job_of_the_current_head_that_ray_does_not_list_yet_shows_as_last_seen() -> None:
    merged = merge_jobs([], [entry("a", "PENDING", incarnation="new")], "new", RESTART)
    assert merged[0].status == "PENDING" and merged[0].message == "pending message"
    # An incarnation nobody knows (an older head) never makes a job LOST.
    assert merge_jobs([], [entry("b", "RUNNING")], "", RESTART)[0].status == "RUNNING"


def test_merged_rows_are_newest_first_and_one_per_id() -> None:
    rows = merge_jobs(
        [ray_job("r", "RUNNING", start=T0 + 10)],
        [entry("old", "RUNNING", submitted_at=T0 - 10), entry("r", "RUNNING"),
         entry("new", "SUCCEEDED", submitted_at=T0 + 20)],
        "new",
        RESTART,
    )  # fmt: skip
    assert [j.id for j in rows] == ["new", "r", "old"]
    assert LOST in TERMINAL


# -- the ledger file ----------------------------------------------------------------------------


@pytest.fixture
def paths(tmp_path: Path) -> ClusterPaths:
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    return paths


def test_seen_writes_only_when_something_changed(paths: ClusterPaths) -> None:
    record_submission(paths, "a", "python a.py", "inc1", now=T0)
    running = ray_job("a", "RUNNING", "Job is currently running.")
    assert record_seen(paths, [running, ray_job("not-ours", "RUNNING")], now=T0 + 1)
    before = os.stat(paths.jobs_json)
    for second in range(2, 30):  # a poll every 2 s: no write
        assert not record_seen(paths, [running], now=T0 + second)
    after = os.stat(paths.jobs_json)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert [e.id for e in read_ledger(paths)] == ["a"]  # only raycai's jobs
    # still running a while later: refreshed so that "last seen" stays near the truth
    assert record_seen(paths, [running], now=T0 + 1 + REFRESH_S)
    assert read_ledger(paths)[0].last_seen_at == T0 + 1 + REFRESH_S
    assert record_seen(paths, [ray_job("a", "SUCCEEDED", "done")], now=T0 + 200)
    assert not record_seen(paths, [ray_job("a", "SUCCEEDED", "done")], now=T0 + 9999)
    # a partial answer (UNKNOWN) says nothing new
    assert not record_seen(paths, [ray_job("a", "UNKNOWN")], now=T0 + 10_000)
    assert read_ledger(paths)[0].status == "SUCCEEDED"


def test_the_ledger_keeps_the_newest_entries(paths: ClusterPaths) -> None:
    for i in range(MAX_ENTRIES + 3):
        record_submission(paths, f"j{i}", "true", "inc", now=T0 + i)
    ids = [e.id for e in read_ledger(paths)]
    assert len(ids) == MAX_ENTRIES and ids[0] == "j3" and ids[-1] == f"j{MAX_ENTRIES + 2}"


def test_a_corrupt_ledger_reads_as_empty_and_is_kept_aside(paths: ClusterPaths) -> None:
    paths.jobs_json.write_text("{not json")
    assert read_ledger(paths) == []
    assert not record_seen(paths, [ray_job("a", "RUNNING")])  # nothing of ours: no write
    assert paths.jobs_json.read_text() == "{not json"
    record_submission(paths, "a", "true", "inc")
    assert [e.id for e in read_ledger(paths)] == ["a"]
    assert (paths.root / "jobs.json.corrupt").read_text() == "{not json"
    # an entry that is not one is skipped when read and kept as it is when written
    data = json.loads(paths.jobs_json.read_text())
    data["jobs"].insert(0, {"weird": True})
    paths.jobs_json.write_text(json.dumps(data))
    record_submission(paths, "b", "true", "inc")
    assert [e.id for e in read_ledger(paths)] == ["a", "b"]
    assert json.loads(paths.jobs_json.read_text())["jobs"][0] == {"weird": True}


def test_no_cluster_directory_is_ever_created(tmp_path: Path) -> None:
    from raycai_core.work.ledger import LedgerError

    paths = ClusterPaths(tmp_path, "gone")
    with pytest.raises(LedgerError):
        record_submission(paths, "a", "true", "inc")
    assert not paths.root.exists() and read_ledger(paths) == []


# -- the CLI against the stand-in dashboard -----------------------------------------------------


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        yield fake


def publish_head(project: Path, dash: FakeDashboard, incarnation: str, started_at: float) -> None:
    paths = ClusterPaths(project, "demo")
    paths.root.mkdir(parents=True, exist_ok=True)
    port = int(dash.url.rsplit(":", 1)[1])
    head = {"ip": "127.0.0.1", "gcs_port": 1, "dashboard_port": port, "client_port": 2,
            "ray_version": "2.60.0", "python_version": "3.11.7",
            "incarnation": incarnation, "started_at": started_at}  # fmt: skip
    paths.head_json.write_text(json.dumps(head))
    if not paths.auth_token.exists():
        paths.auth_token.write_text(TOKEN)
        paths.auth_token.chmod(0o600)


def listed(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return {j["id"]: j for j in json.loads(result.stdout)}


async def test_submitted_jobs_survive_a_head_restart_without_state(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = ClusterPaths(tmp_path, "demo")
    publish_head(tmp_path, dash, "inc-1", time.time() - 600)
    secret = "s3cr3t-value-never-stored"
    runs = await run_cli(
        tmp_path, "job", "submit", "demo", "--env", f"TOKEN={secret}", "--", "python", "run.py"
    )
    done = await run_cli(tmp_path, "job", "submit", "demo", "--", "python done.py")
    assert runs.returncode == 0 and done.returncode == 0, runs.stderr + done.stderr
    run_id, done_id = runs.stdout.strip(), done.stdout.strip()
    assert dash.submitted[0]["runtime_env"]["env_vars"] == {"TOKEN": secret}  # Ray got it

    # (a) the ledger has both, as submitted, under the head's incarnation
    entries = {e.id: e for e in read_ledger(paths)}
    assert set(entries) == {run_id, done_id}
    assert entries[run_id].entrypoint == "python run.py"
    assert entries[run_id].head_incarnation == "inc-1"
    assert entries[run_id].status == "PENDING"
    # (f) never the environment's values (nor its names)
    assert secret not in paths.jobs_json.read_text() and "TOKEN" not in paths.jobs_json.read_text()

    # Ray runs one and finishes the other; a listing records what it saw.
    dash.jobs[run_id].update(status="RUNNING", message="Job is currently running.")
    dash.jobs[done_id].update(status="SUCCEEDED", message="Job finished successfully.")
    before = listed(await run_cli(tmp_path, "job", "list", "demo", "--json"))
    assert before[run_id]["status"] == "RUNNING" and before[done_id]["status"] == "SUCCEEDED"
    assert {e.id: e.status for e in read_ledger(paths)} == {
        run_id: "RUNNING",
        done_id: "SUCCEEDED",
    }

    # (b) the head restarts without its state: a new incarnation, Ray knows no job
    restart = time.time()
    publish_head(tmp_path, dash, "inc-2", restart)
    dash.jobs.clear()
    after = listed(await run_cli(tmp_path, "job", "list", "demo", "--json"))
    assert after[run_id]["status"] == "LOST"
    assert after[run_id]["message"].startswith(
        f"lost when the head restarted at {clock(restart)} (last seen RUNNING at "
    )
    # (c) the finished one: its last status, from raycai's record
    assert after[done_id]["status"] == "SUCCEEDED"
    assert RECORD_NOTE in after[done_id]["message"]

    table = await run_cli(tmp_path, "job", "list", "demo")
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith(run_id))
    assert "LOST" in row and f"lost when the head restarted at {clock(restart)}" in row

    status = await run_cli(tmp_path, "job", "status", "demo", run_id)
    assert status.returncode == 1  # like a job that failed
    assert "status:      LOST" in status.stdout and clock(restart) in status.stdout
    finished = await run_cli(tmp_path, "job", "status", "demo", done_id)
    assert finished.returncode == 0 and "SUCCEEDED" in finished.stdout
    unknown = await run_cli(tmp_path, "job", "status", "demo", "raysubmit_nope")
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr

    # A job submitted to the new head is not LOST while Ray lists it.
    fresh = await run_cli(tmp_path, "job", "submit", "demo", "--", "true")
    now = listed(await run_cli(tmp_path, "job", "list", "demo", "--json"))
    assert now[fresh.stdout.strip()]["status"] == "PENDING"
    assert read_ledger(paths)[-1].head_incarnation == "inc-2"


async def test_a_job_whose_driver_died_with_the_head_shows_rays_own_status(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    publish_head(tmp_path, dash, "inc-1", time.time() - 600)
    job_id = (await run_cli(tmp_path, "job", "submit", "demo", "--", "sleep 1000")).stdout.strip()
    dash.jobs[job_id].update(status="RUNNING", message="Job is currently running.")
    listed(await run_cli(tmp_path, "job", "list", "demo", "--json"))
    # The head restarted and kept its state (GCS fault tolerance): Ray says what happened.
    publish_head(tmp_path, dash, "inc-2", time.time())
    died = "Job supervisor actor died: the head node restarted"
    dash.jobs[job_id] = job(job_id, "FAILED", "sleep 1000", message=died)
    shown = listed(await run_cli(tmp_path, "job", "list", "demo", "--json"))[job_id]
    assert (shown["status"], shown["message"]) == ("FAILED", died)
