"""Remote mode's file layer against the local workspace's files API (no Ray): delete-upload-
verify under API faults, the `(1)` names it never leaves, and the desired-state conflict
refusal that stands in for the file lock a remote command cannot take."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.remote import DesiredStateChanged, RemoteClusterManager
from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.errors import CMLError
from raycai_core.cml.files import ProjectFiles, copy_names
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import parse_spec
from tests.fixtures.workspace import RUNTIME
from tests.helpers import as_in_a_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAULTS = {
    "seed": 11,
    "drop_rate": 0.05,
    "lost_response_rate": 0.05,
    "error_rates": {429: 0.03, 500: 0.04, 503: 0.03},
    "retry_after_s": 0,
}


@pytest.fixture
async def cml(local_workspace: WorkspaceHandle) -> AsyncIterator[CMLClient]:
    policy = RetryPolicy(attempts=10, initial_wait=0.01, max_wait=0.1, deadline=60)
    async with CMLClient(local_workspace.credentials(), retry=policy) as client:
        yield client


def test_copy_names() -> None:
    names = {"a.py", "a(1).py", "a(12).py", "b(1).py", "a(x).py", "a(1).json"}
    assert copy_names("a.py", names) == ["a(1).py", "a(12).py"]
    assert copy_names("auth_token", {"auth_token", "auth_token(1)"}) == ["auth_token(1)"]


async def test_upload_never_overwrites_and_replace_does(
    local_workspace: WorkspaceHandle, cml: CMLClient
) -> None:
    """The workspace behaves as CML (a second upload is `name(1)`); replace leaves one file
    with the new bytes, and cleans up a copy an earlier lost answer left."""
    files = ProjectFiles(cml)
    root = local_workspace.project_dir
    await files._upload_once("dir/sub/a.json", b"one")
    await files._upload_once("dir/sub/a.json", b"two")
    assert (root / "dir/sub/a(1).json").read_bytes() == b"two"
    assert [e.name for e in await files.list("dir/sub")] == ["a(1).json", "a.json"]
    assert await files.replace("dir/sub/a.json", b"three") is True
    assert sorted(p.name for p in (root / "dir/sub").iterdir()) == ["a.json"]
    assert (root / "dir/sub/a.json").read_bytes() == b"three"
    assert (root / "dir/sub/a.json").stat().st_mode & 0o777 == 0o644  # CML's: any umask
    assert await files.replace("dir/sub/a.json", b"three") is False  # already so: untouched
    assert await files.read("dir/sub/a.json") == b"three"
    assert await files.read("dir/sub/missing.json") is None
    assert await files.list("no/such/dir") == []
    await files.delete("dir/sub/a.json")
    await files.delete("dir/sub/a.json")  # gone already: done
    assert not (root / "dir/sub/a.json").exists()


async def test_replace_under_api_faults_leaves_no_copies(
    local_workspace: WorkspaceHandle, cml: CMLClient
) -> None:
    files = ProjectFiles(cml)
    root = local_workspace.project_dir
    local_workspace.set_faults(**FAULTS)
    try:
        for round_ in range(3):
            for k in range(8):
                data = f"round {round_} file {k}\n".encode() * (k + 1)
                await files.replace(f"faulty/f{k}.txt", data)
        stats = local_workspace.stats()
    finally:
        local_workspace.set_faults()
    injected = {k: v for k, v in stats["injected"].items() if k != "latency"}
    assert sum(injected.values()) >= 0.1 * stats["total"], stats  # the faults happened
    assert injected.get("lost"), injected  # the case that makes `(1)` copies
    for k in range(8):
        assert (root / f"faulty/f{k}.txt").read_bytes() == f"round 2 file {k}\n".encode() * (k + 1)
    assert sorted(p.name for p in (root / "faulty").iterdir()) == [f"f{k}.txt" for k in range(8)]


async def test_an_upload_whose_answer_was_lost_is_found_not_repeated(
    local_workspace: WorkspaceHandle, cml: CMLClient
) -> None:
    """An upload that landed but whose answer was lost must not be uploaded again (CML
    would store the retry as `a(1).txt`): the next round lists first and finds it."""
    files = ProjectFiles(cml)
    root = local_workspace.project_dir
    local_workspace.set_faults(lost_response_rate=1.0)
    try:
        with pytest.raises(CMLError):
            await files._upload_once("lost/a.txt", b"v1")
    finally:
        local_workspace.set_faults()
    assert (root / "lost/a.txt").read_bytes() == b"v1"  # it did land
    assert await files.replace("lost/a.txt", b"v1") is False  # found: not uploaded again
    assert await files.replace("lost/a.txt", b"v2") is True
    assert sorted(p.name for p in (root / "lost").iterdir()) == ["a.txt"]
    assert (root / "lost/a.txt").read_bytes() == b"v2"


def _spec(name: str) -> object:
    return parse_spec(
        {
            "name": name,
            "head": {"cpu": 1, "memory": 1, "runtime_identifier": RUNTIME},
            "workers": {"count": 1, "cpu": 1, "memory": 1, "runtime_identifier": RUNTIME},
        }
    )


async def test_store_refuses_when_the_desired_state_changed(
    local_workspace: WorkspaceHandle, cml: CMLClient, tmp_path: Path
) -> None:
    """A remote command re-reads cluster.json just before writing it: a change made since
    it read it (another raycai) is refused, and nothing is written."""
    spec = _spec("conflict")
    root = local_workspace.project_dir
    paths = ClusterPaths(root, "conflict")
    first = RemoteClusterManager(cml, tmp_path / "one")
    await first.project.pull("conflict")
    await first._store(spec)  # type: ignore[arg-type]
    stored = json.loads(paths.cluster_json.read_bytes())
    assert stored["state"] == "active"
    assert paths.script("head").is_file() and paths.launcher_json.is_file()
    assert paths.auth_token.read_bytes()  # uploaded: the launcher makes it 0600 itself

    second = RemoteClusterManager(cml, tmp_path / "two")
    await second.project.pull("conflict")
    # Meanwhile another raycai (here: the project's own files) changes the desired state.
    changed = dict(stored, updated_at=stored["updated_at"] + 1)
    paths.cluster_json.write_text(json.dumps(changed))
    with pytest.raises(DesiredStateChanged, match="changed in the project since"):
        await second._store(spec, "deleting")  # type: ignore[arg-type]
    assert json.loads(paths.cluster_json.read_bytes()) == changed  # nothing written
    # Read again, the same command goes through, and the token stays the cluster's.
    token = paths.auth_token.read_bytes()
    await second.project.pull("conflict")
    await second._store(spec, "deleting")  # type: ignore[arg-type]
    assert json.loads(paths.cluster_json.read_bytes())["state"] == "deleting"
    assert paths.auth_token.read_bytes() == token
    await second.project.remove_cluster_files("conflict")
    assert not paths.cluster_json.exists() and not paths.script("head").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("env", "demo"), "needs the Ray head's address"),
        (("job", "list", "demo"), "needs the Ray head's address"),
        (("scale", "demo", "3"), "`raycai up` with the new spec"),
    ],
)
def test_commands_that_need_the_project_say_where_they_run(
    args: tuple[str, ...], said: str, tmp_path: Path
) -> None:
    """With CML_* set and no project directory, the files are remote: a command that needs
    the Ray head (or the project's lock) says it must run inside the project, and how."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    env.update(CML_HOST="https://ml-test.example.invalid", CML_API_KEY="k", CML_PROJECT_ID="p")
    done = subprocess.run(
        [sys.executable, "-m", "raycai_core.cli.main", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "inside the project" in done.stderr
    assert "a CML job or application" in done.stderr


def test_remote_logs_follow_reads_what_the_launchers_append(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    """`raycai logs --all --follow` from outside: the logs are downloaded again every few
    seconds and grow in place, so only the new lines are printed."""
    logs = ClusterPaths(local_workspace.project_dir, "far").logs_dir
    logs.mkdir(parents=True)
    stamp = "2026-01-01T00:00:0{}.000Z [launcher] {}\n"
    (logs / "head.log").write_text(stamp.format(1, "head first"))
    (logs / "worker-1.log").write_text(stamp.format(2, "worker first"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    env.update(
        CML_HOST=local_workspace.url,
        CML_API_KEY=local_workspace.api_key,
        CML_PROJECT_ID=local_workspace.project_id,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "raycai_core.cli.main", "logs", "far", "--all", "--follow"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,  # ctrl+c ends it, even where SIGINT is inherited ignored
    )
    assert process.stdout is not None
    try:
        seen = [process.stdout.readline() for _ in range(2)]
        assert "head first" in seen[0] and "worker first" in seen[1], seen
        with open(logs / "head.log", "a") as handle:
            handle.write(stamp.format(3, "head later"))
        later = process.stdout.readline()
        assert "head later" in later and later.startswith("head"), later
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    leftover = process.stdout.read()
    assert "first" not in leftover  # nothing printed twice


def test_remote_logs_ray_prints_the_projects_copy_of_a_nodes_ray_log(
    local_workspace: WorkspaceHandle, tmp_path: Path
) -> None:
    """`raycai logs NAME NODE --ray FILE` from outside: Ray's dashboard is out of reach, the
    copy the node's launcher keeps in the project (the newest session's) is not."""
    copies = ClusterPaths(local_workspace.project_dir, "far").logs_dir / "worker-1" / "ray"
    for session, text in (
        ("session_2026-01-01_00-00-00_0_1", "old\n"),
        ("session_2026-01-01_01-00-00_0_2", "a\nb\nc\n"),
    ):
        (copies / session).mkdir(parents=True)
        (copies / session / "raylet.out").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    env.update(
        CML_HOST=local_workspace.url,
        CML_API_KEY=local_workspace.api_key,
        CML_PROJECT_ID=local_workspace.project_id,
    )

    def logs(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "raycai_core.cli.main", "logs", "far", "worker-1", *args]
        return subprocess.run(
            argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    done = logs("--ray", "raylet.out", "-n", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["b", "c"]
    assert "session_2026-01-01_01-00-00_0_2/raylet.out" in done.stderr
    assert "from outside the project" in done.stderr
    missing = logs("--ray", "gcs_server.out")
    assert (
        missing.returncode == 2
        and "the project has no copy of worker-1's gcs_server.out" in missing.stderr
    )
    follow = logs("--ray", "raylet.out", "--follow")
    assert follow.returncode == 2 and "inside the project" in follow.stderr
