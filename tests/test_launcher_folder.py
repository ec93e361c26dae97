"""Where the launchers live: the project-level launcher folder (RAYCAI_DIR / `--dir`, default
`.raycai`, a plain name such as `raycai-clusters`). Pure parts and rendering first, then the
CLI on the local workspace with the stand-in Ray (tests/fixtures/stand_in_ray.py): a cluster
brought up in `raycai-clusters`, `raycai list` finding clusters in both folders, a bad
folder name refused with nothing written."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import (
    DEFAULT_FOLDER,
    ClusterPaths,
    LauncherFolderError,
    check_folder,
    cluster_names_on_disk,
    folder_note,
    launcher_folder,
    use_launcher_folder,
)
from raycai_core.launcher.render import GITIGNORE_NOTE, RAY_LOGS_NOTE, render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import spec_from_flags
from raycai_core.work.packages import package_files
from tests.fixtures.ray_nodes import wait_until
from tests.helpers import SMALL_NODES, cli_env, cluster_apps, nodes_of, raycai_argv
from tests.tui.support import fake_ray, small_spec

__all__ = ["fake_ray"]  # the fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FOLDER = "raycai-clusters"


@pytest.fixture(autouse=True)
def _no_folder_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYCAI_DIR", raising=False)


@pytest.mark.parametrize("name", [".raycai", "raycai-clusters", "clusters_2", "My.Raycai"])
def test_plain_folder_names_are_accepted(name: str) -> None:
    assert check_folder(name) == name


@pytest.mark.parametrize(
    "name", ["", "..", ".", "../x", "a/b", "/abs", "x\\y", "-x", ".git", ".venv", "a b", "x" * 65]
)
def test_other_folder_names_are_refused_saying_what_is_accepted(name: str) -> None:
    with pytest.raises(LauncherFolderError, match="use a plain folder name at the project root"):
        check_folder(name)


def test_the_setting_comes_from_raycai_dir_else_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert launcher_folder() == DEFAULT_FOLDER
    assert "from the default" in folder_note(tmp_path)
    monkeypatch.setenv("RAYCAI_DIR", FOLDER)
    assert launcher_folder() == FOLDER
    note = folder_note(tmp_path)
    assert f"launcher folder {FOLDER} ({tmp_path / FOLDER})" in note and "RAYCAI_DIR" in note
    monkeypatch.setenv("RAYCAI_DIR", "a/b")
    with pytest.raises(LauncherFolderError, match=r"^RAYCAI_DIR: launcher folder 'a/b'"):
        launcher_folder()
    with pytest.raises(LauncherFolderError):
        use_launcher_folder("../up")
    assert use_launcher_folder(".raycai") == ".raycai"  # --dir wins over RAYCAI_DIR


def test_the_tui_refuses_a_bad_folder_before_it_starts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from raycai_tui.app import main

    result = CliRunner().invoke(main, ["--dir", "../x", "--project-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "use a plain folder name at the project root" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_cluster_is_found_where_it_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".raycai" / "clusters" / "old").mkdir(parents=True)
    monkeypatch.setenv("RAYCAI_DIR", FOLDER)
    assert ClusterPaths(tmp_path, "new").relative.as_posix() == f"{FOLDER}/clusters/new"
    old = ClusterPaths(tmp_path, "old")  # made before the setting changed
    assert old.relative.as_posix() == ".raycai/clusters/old" and old.gitignore is None
    monkeypatch.delenv("RAYCAI_DIR")
    assert ClusterPaths(tmp_path, "new").relative.as_posix() == ".raycai/clusters/new"


def test_rendering_in_a_plain_folder_writes_its_gitignore(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAYCAI_DIR", FOLDER)
    autoscaled = spec_from_flags(name="demo", runtime="rt", workers=1, max_workers=3)
    rendered = render_cluster(tmp_path, autoscaled)
    root = tmp_path / FOLDER / "clusters" / "demo"
    assert rendered.paths.root == root and (root / "auth_token").is_file()
    assert f"CLUSTER_DIR = '{FOLDER}/clusters/demo'" in (root / "head.py").read_text()
    provider = json.loads((root / "autoscaler.json").read_text())["provider"]["raycai"]
    assert provider["worker_request"]["script"] == f"{FOLDER}/clusters/demo/worker.py"
    gitignore = tmp_path / FOLDER / ".gitignore"
    ignored = GITIGNORE_NOTE + "auth_token\n" + RAY_LOGS_NOTE + "clusters/*/logs/*/ray/\n"
    assert gitignore.read_text() == ignored
    assert not (tmp_path / ".raycai").exists()
    assert ".gitignore" in rendered.changed
    assert ".gitignore" not in render_cluster(tmp_path, autoscaled).changed  # idempotent
    # What git makes of it: the token and the Ray log copies stay out, the launcher logs not.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    copy = root / "logs" / "head" / "ray" / "session_2026-12-07_00-00-00_0_1" / "raylet.out"
    copy.parent.mkdir(parents=True)
    copy.write_text("x\n")
    (root / "logs" / "head.log").write_text("y\n")
    checked = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", str(copy), str(root / "auth_token")],
        capture_output=True,
        text=True,
    )
    assert checked.stdout.split() == [str(copy), str(root / "auth_token")]
    launcher_log = ["git", "-C", str(tmp_path), "check-ignore", str(root / "logs" / "head.log")]
    assert subprocess.run(launcher_log, capture_output=True).returncode == 1  # not ignored

    # A user's own .gitignore there keeps its lines and gains the token's, once.
    gitignore.write_text("*.tmp")
    render_cluster(tmp_path, autoscaled)
    assert gitignore.read_text() == "*.tmp\n" + ignored
    # The folder never goes into a job's working_dir package.
    (tmp_path / "main.py").write_text("print(1)\n")
    assert package_files(tmp_path) == [Path("main.py")]


def test_a_dot_folder_gets_no_gitignore(tmp_path: Path) -> None:
    render_cluster(tmp_path, small_spec("demo"))
    assert (tmp_path / ".raycai" / "clusters" / "demo" / "head.py").is_file()
    assert not (tmp_path / ".raycai" / ".gitignore").exists()


# --- the CLI, end to end on the local workspace (stand-in Ray) ----------------------------


def test_a_cluster_in_raycai_clusters_and_list_in_both_folders(
    fake_ray: WorkspaceHandle,
) -> None:
    handle = fake_ray
    project = handle.project_dir
    env = cli_env(handle)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            raycai_argv(*args), env={**env, **extra}, capture_output=True, text=True, timeout=120
        )

    # A cluster made in the default folder earlier (its files only: no applications).
    render_cluster(project, small_spec("old", workers=2))
    write_desired(ClusterPaths(project, "old"), small_spec("old", workers=2))

    up = run("up", "demo", "--dir", FOLDER, "--workers", "1", *SMALL_NODES[:-2], "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"launcher scripts written to {FOLDER}/clusters/demo/" in up.stderr
    root = project / FOLDER / "clusters" / "demo"
    assert {"head.py", "worker.py", "launcher.json", "auth_token", "cluster.json"} <= {
        p.name for p in root.iterdir()
    }
    assert "auth_token" in (project / FOLDER / ".gitignore").read_text().splitlines()
    assert not (project / ".raycai" / "clusters" / "demo").exists()
    # The launchers ran from there: their records and logs are in the folder. `up` returns
    # once Ray counts the worker; its launcher records "joined" on its next look (1 s apart).
    record = root / "nodes" / "worker-1.json"
    wait_until(lambda: json.loads(record.read_text())["phase"] == "joined", 30, "worker-1 joined")
    assert (root / "logs" / "head.log").is_file()

    # RAYCAI_DIR is the same setting as --dir; `list` looks in it and in the default.
    listed = run("list", "--json", RAYCAI_DIR=FOLDER)
    assert listed.returncode == 0, listed.stderr
    desired = {c["name"]: c["workers_desired"] for c in json.loads(listed.stdout)}
    assert desired == {"demo": 1, "old": 2}
    status = run("status", "old", "--dir", FOLDER)  # found where it lives
    assert "workers desired 2" in status.stdout, status.stdout + status.stderr
    assert cluster_names_on_disk(project) == ["old"]  # this process: the default folder only
    exports = run("env", "demo", "--dir", FOLDER)  # a driver's shell finds the folder too
    assert f"export RAYCAI_DIR={FOLDER}" in exports.stdout, exports.stdout + exports.stderr
    assert f"{FOLDER}/clusters/demo/auth_token" in exports.stdout

    # A bad folder is refused before anything is read or written.
    apps_before = len(nodes_of(asyncio.run(cluster_apps(handle)), "demo2"))
    for args, extra in (
        (("--dir", "../evil"), {}),
        (("--dir", "a/b"), {}),
        ((), {"RAYCAI_DIR": ".git"}),
    ):
        refused = run("up", "demo2", *args, *SMALL_NODES, **extra)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "use a plain folder name at the project root" in refused.stderr
    assert apps_before == 0 and nodes_of(asyncio.run(cluster_apps(handle)), "demo2") == []
    assert not (project.parent / "evil").exists() and not (project / "a").exists()
    assert not (project / ".git" / "clusters").exists()
    assert not list(project.glob("*/clusters/demo2"))

    down = run("down", "demo", "--yes", RAYCAI_DIR=FOLDER)
    assert down.returncode == 0, down.stdout + down.stderr
    assert (root / "logs" / "head.log").is_file()  # logs are kept where they were
