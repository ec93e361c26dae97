"""The copies of a node's Ray logs in the cluster directory (raycai_core/launcher/ray_logs.py,
run by each launcher): incremental appends, a launcher started again going on where the last
one stopped, Ray's move of a dead worker's files, the per-cluster cap, the last pass at the
end, and the pass over every session before the launcher prunes old ones. No Ray: the
sessions are directories made here as Ray lays them out. The whole on real Ray:
tests/test_groups_ray.py (a scaled-down worker) and tests/test_healing.py (kill -9)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from raycai_core.launcher import ray_logs, template
from raycai_core.launcher.ray_logs import RayLogMirror
from raycai_core.launcher.render import render_cluster
from raycai_core.spec import parse_spec
from tests.fixtures.patience import Deadline

pytestmark = pytest.mark.integration

SESSION_A = "session_2026-12-07_03-00-00_000001_11"
SESSION_B = "session_2026-12-07_04-00-00_000001_12"


def session(temp: Path, name: str, *, latest: bool = True) -> Path:
    logs = temp / name / "logs"
    (logs / "old").mkdir(parents=True, exist_ok=True)
    if latest:
        link = temp / "session_latest"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(temp / name)
    return logs


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def mirror(tmp_path: Path, node: str = "worker-1", **kwargs: int) -> RayLogMirror:
    return RayLogMirror(str(tmp_path / "temp"), str(tmp_path / "logs"), node, **kwargs)


def copy_of(tmp_path: Path, session_name: str, name: str, node: str = "worker-1") -> str:
    return (tmp_path / "logs" / node / "ray" / session_name / name).read_text()


def test_each_pass_appends_only_what_the_files_grew_by(tmp_path: Path) -> None:
    logs = session(tmp_path / "temp", SESSION_A)
    append(logs / "raylet.out", "one\n")
    append(logs / "worker-abc-01000000-77.out", "print 1\n")
    (logs / "worker-abc-01000000-77.err").touch()  # empty: no copy yet
    append(logs / "python-core-worker-abc_77.log", "not kept\n")
    append(logs / "raylet.1.out", "a second start in this session\n")
    copies = mirror(tmp_path)
    assert copies.sync_current() == len("one\nprint 1\na second start in this session\n")
    append(logs / "raylet.out", "two\n")
    assert copies.sync_current() == len("two\n")
    assert copies.sync_current() == 0
    assert copy_of(tmp_path, SESSION_A, "raylet.out") == "one\ntwo\n"
    kept = sorted(p.name for p in (tmp_path / "logs/worker-1/ray" / SESSION_A).iterdir())
    assert kept == ["raylet.1.out", "raylet.out", "worker-abc-01000000-77.out"]


def test_a_flood_is_caught_up_over_several_passes(tmp_path: Path) -> None:
    logs = session(tmp_path / "temp", SESSION_A)
    append(logs / "raylet.out", "x" * 2500)
    copies = mirror(tmp_path, max_read=1000)
    assert [copies.sync_current() for _ in range(4)] == [1000, 1000, 500, 0]
    assert copy_of(tmp_path, SESSION_A, "raylet.out") == "x" * 2500


def test_a_launcher_started_again_goes_on_from_the_copy(tmp_path: Path) -> None:
    logs = session(tmp_path / "temp", SESSION_A)
    append(logs / "raylet.out", "before\n")
    mirror(tmp_path).sync_current()
    append(logs / "raylet.out", "after\n")
    assert mirror(tmp_path).sync_current() == len("after\n")  # a new mirror, no state
    assert copy_of(tmp_path, SESSION_A, "raylet.out") == "before\nafter\n"


def test_a_dead_workers_file_moved_to_old_goes_on_and_a_replaced_file_starts_over(
    tmp_path: Path,
) -> None:
    logs = session(tmp_path / "temp", SESSION_A)
    name = "worker-abc-01000000-77.out"
    append(logs / name, "alive\n")
    append(logs / "raylet.out", "first life\n")
    copies = mirror(tmp_path)
    copies.sync_current()
    append(logs / name, "last words\n")
    os.replace(logs / name, logs / "old" / name)  # what Ray's log monitor does
    (logs / "raylet.out").unlink()
    append(logs / "raylet.out", "new\n")  # another inode
    copies.sync_current()
    assert copy_of(tmp_path, SESSION_A, name) == "alive\nlast words\n"
    assert copy_of(tmp_path, SESSION_A, "raylet.out") == "first life\nnew\n"


def test_only_the_current_session_is_followed_and_the_last_pass_takes_every_one(
    tmp_path: Path,
) -> None:
    temp = tmp_path / "temp"
    old = session(temp, SESSION_A, latest=False)
    current = session(temp, SESSION_B)
    append(old / "raylet.out", "old session\n")
    append(current / "gcs_server.out", "gcs\n")
    copies = mirror(tmp_path, node="head")
    copies.start(interval=0.05)
    deadline = Deadline(10, every=0.05)
    target = tmp_path / "logs/head/ray" / SESSION_B / "gcs_server.out"
    # The copy is appended to, so it may exist a moment before its first line is in it.
    while not (target.exists() and target.read_text()) and not deadline.passed():
        time.sleep(0.05)
    assert target.read_text() == "gcs\n"
    assert not (tmp_path / "logs/head/ray" / SESSION_A).exists()
    append(current / "gcs_server.out", "said at the end\n")
    copies.stop()  # Ray has stopped: the last pass, every session
    assert copy_of(tmp_path, SESSION_B, "gcs_server.out", "head") == "gcs\nsaid at the end\n"
    assert copy_of(tmp_path, SESSION_A, "raylet.out", "head") == "old session\n"


def test_the_cap_drops_the_sessions_written_longest_ago_first_never_the_current_one(
    tmp_path: Path,
) -> None:
    root = tmp_path / "logs"
    written = {}
    for index, (node, name) in enumerate(
        [
            ("head", "session_2026-12-07_01-00-00_0_1"),
            ("worker-2", "session_2026-12-07_02-00-00_0_2"),
        ]
    ):
        folder = root / node / "ray" / name
        folder.mkdir(parents=True)
        (folder / "raylet.out").write_text("o" * 400)
        moment = time.time() - 1000 + index * 100  # head's written longest ago
        os.utime(folder / "raylet.out", (moment, moment))
        written[node] = folder
    logs = session(tmp_path / "temp", SESSION_B)
    append(logs / "raylet.out", "n" * 500)
    notes: list[str] = []
    copies = RayLogMirror(
        str(tmp_path / "temp"), str(root), "worker-1", cap_bytes=1000, note=notes.append
    )
    copies.sync_current()  # 1300 bytes in all: the head's old session goes, 900 left
    assert not written["head"].exists()
    assert written["worker-2"].exists()
    assert copy_of(tmp_path, SESSION_B, "raylet.out") == "n" * 500
    assert any("dropped head/ray/session_2026-12-07_01-00-00_0_1" in note for note in notes)


def test_a_session_over_the_cap_alone_is_not_copied_further(tmp_path: Path) -> None:
    logs = session(tmp_path / "temp", SESSION_A)
    append(logs / "raylet.out", "z" * 600)
    notes: list[str] = []
    copies = RayLogMirror(
        str(tmp_path / "temp"), str(tmp_path / "logs"), "worker-1", cap_bytes=500, note=notes.append
    )
    assert copies.sync_current() == 600
    append(logs / "raylet.out", "more")
    assert copies.sync_current() == 0
    assert SESSION_A in copies.full
    assert any("alone is over the cap" in note for note in notes)


@pytest.fixture
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> template.Launcher:
    """A launcher of a rendered cluster (nothing started), its Ray temp dir under tmp_path."""
    spec = parse_spec(
        {"name": "demo", "head": {"runtime_identifier": "img", "cpu": 2, "memory": 4}}
    )
    rendered = render_cluster(tmp_path / "project", spec)
    assert (rendered.paths.root / ray_logs.PROGRAM).is_file()
    assert rendered.launcher["ray_logs"]["cap_bytes"] == 200 * 2**20
    monkeypatch.setattr(template, "ray_temp_dir", lambda *_: str(tmp_path / "temp"))
    monkeypatch.setattr(template, "CLUSTER_DIR", str(rendered.paths.relative))
    config = template.load_config(str(tmp_path / "project"))
    return template.Launcher(str(tmp_path / "project"), config, "demo", "worker-1")


def test_the_launcher_copies_every_session_before_it_prunes_old_ones(
    tmp_path: Path, launcher: template.Launcher
) -> None:
    temp = tmp_path / "temp"
    for name in (SESSION_A, "session_2026-12-07_03-30-00_000001_12", SESSION_B):
        append(session(temp, name) / "raylet.out", f"{name}\n")
    assert launcher.ray_logs.mirror is not None  # loaded from the cluster directory's copy
    launcher.common_args("127.0.0.1", {"memory": 2**30, "object_store_memory": 2**29})
    assert not (temp / SESSION_A).exists()  # pruned: only the newest previous one stays
    copied = tmp_path / "project/.raycai/clusters/demo/logs/worker-1/ray"
    assert copied.joinpath(SESSION_A, "raylet.out").read_text() == f"{SESSION_A}\n"


def test_a_cluster_rendered_without_the_copier_runs_without_copies(
    tmp_path: Path, launcher: template.Launcher
) -> None:
    launcher.config.pop("ray_logs")
    copies = template.RayLogCopies(launcher)
    assert copies.mirror is None
    copies.start()
    copies.sync_all()
    copies.stop()
    log = (tmp_path / "project/.raycai/clusters/demo/logs/worker-1.log").read_text()
    assert "Ray log copies off" in log


# -- reading the copies: `raycai logs NAME NODE --ray FILE` once the node is gone -----------------


def test_logs_ray_reads_the_copy_of_a_node_that_is_gone(local_workspace) -> None:
    """No such node in Ray (here: no cluster left at all, as after `raycai down`): the
    newest session's copy is printed, marked with when the node's launcher last wrote."""
    import json
    import subprocess

    from tests.helpers import cli_env, raycai_argv

    cluster = local_workspace.project_dir / ".raycai" / "clusters" / "demo"
    copies = cluster / "logs" / "worker-1" / "ray"
    for session_name, text in ((SESSION_A, "older\n"), (SESSION_B, "line 1\nline 2\nline 3\n")):
        (copies / session_name).mkdir(parents=True)
        (copies / session_name / "raylet.out").write_text(text)
    (cluster / "nodes").mkdir()
    (cluster / "nodes" / "worker-1.json").write_text(
        json.dumps({"node": "worker-1", "role": "worker", "phase": "stopped", "updated_at": 1.8e9})
    )

    def logs(*args: str) -> subprocess.CompletedProcess[str]:
        argv = raycai_argv("logs", "demo", "worker-1", "--ray", *args)
        env = cli_env(local_workspace)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    result = logs("raylet.out", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["line 2", "line 3"]
    assert f"logs/worker-1/ray/{SESSION_B}/raylet.out" in result.stderr
    assert "(node gone since 2027-01-15 08:00:00 UTC)" in result.stderr
    missing = logs("gcs_server.out")
    assert missing.returncode == 2
    assert "no copy of worker-1's gcs_server.out; copies kept for worker-1: raylet.out" in (
        missing.stderr
    )
