"""Rules on the project directory that the head-side programs repeat from the core (they
cannot import it: tests/test_head_programs.py), checked to agree with it.

The desired-state file: raycai_core.cluster.desired writes and reads cluster.json; the
launchers (drain on SIGTERM unless the cluster is deleting) and the autoscaler's provider
(create nothing unless it is active) read its `state` with their own `desired_state`.

The cluster's lock: raycai_core.cluster.lock holds it for a scale, heal, down or update; the
head's idle check (raycai_idle_suspend.py) takes the same lock with its own `cluster_lock`
before it suspends, and skips its round while another holds it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from raycai_core.cluster.desired import CorruptClusterFile, read_desired, write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lock import ClusterLocked, cluster_lock, lock_free
from raycai_core.launcher import autoscaling
from raycai_core.launcher.render import IDLE_FILE, render_cluster
from raycai_core.spec import parse_spec

SPEC = parse_spec(
    {
        "name": "demo",
        "head": {"runtime_identifier": "img", "cpu": 1, "memory": 2},
        "workers": {"min": 0, "max": 2, "cpu": 1, "memory": 2},
    }
)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def head_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """The rendered programs, as the head runs them."""
    paths = render_cluster(tmp_path_factory.mktemp("project"), SPEC).paths
    return {
        "launcher": _load(paths.script("worker"), "rendered_worker_launcher"),
        "provider": _load(paths.root / autoscaling.PROVIDER_FILE, "rendered_provider"),
    }


def _core_state(paths: ClusterPaths) -> str | None:
    try:
        desired = read_desired(paths)
    except CorruptClusterFile:
        return "corrupt"
    return None if desired is None else desired.state


@pytest.mark.parametrize("state", ["active", "suspended", "deleting"])
def test_a_state_the_core_writes_reads_the_same_on_the_head(
    head_side: dict[str, ModuleType], tmp_path: Path, state: str
) -> None:
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    write_desired(paths, SPEC, state)  # type: ignore[arg-type]
    assert _core_state(paths) == state
    for program in head_side.values():
        assert program.desired_state(str(paths.root)) == state


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, None),  # no file: the cluster's files are gone
        ({"state": "sleeping"}, "corrupt"),  # a state this release does not know
        ("{not json", None),  # read as no file by both (atomic writes never leave one)
    ],
)
def test_missing_or_unreadable_files_read_the_same(
    head_side: dict[str, ModuleType], tmp_path: Path, content: object, expected: str | None
) -> None:
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    if isinstance(content, dict):
        write_desired(paths, SPEC)
        data = json.loads(paths.cluster_json.read_text())
        data.update(content)
        paths.cluster_json.write_text(json.dumps(data))
    elif isinstance(content, str):
        paths.cluster_json.write_text(content)
    core = _core_state(paths)
    assert core == expected
    for program in head_side.values():
        assert program.desired_state(str(paths.root)) == expected


def test_a_file_without_state_is_active_everywhere(
    head_side: dict[str, ModuleType], tmp_path: Path
) -> None:
    """Files written before `state` existed: active for the core and the head alike."""
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    write_desired(paths, SPEC)
    data = json.loads(paths.cluster_json.read_text())
    del data["state"]
    paths.cluster_json.write_text(json.dumps(data))
    assert _core_state(paths) == "active"
    for program in head_side.values():
        assert program.desired_state(str(paths.root)) == "active"


async def test_the_clusters_lock_held_by_the_core_or_the_head_excludes_the_other(
    tmp_path: Path,
) -> None:
    sleepy = parse_spec(
        {
            "name": "demo",
            "idle_suspend_minutes": 1,
            "head": {"runtime_identifier": "img", "cpu": 1, "memory": 2},
        }
    )
    paths = render_cluster(tmp_path, sleepy).paths
    idle_check = _load(paths.root / IDLE_FILE, "rendered_idle_suspend")
    root = str(paths.root)
    assert lock_free(paths)
    async with cluster_lock(paths, wait=False):  # a scale, heal, down or update
        with idle_check.cluster_lock(root) as taken:
            assert not taken  # the head's round is skipped
    with idle_check.cluster_lock(root) as taken:  # the head suspends the cluster
        assert taken and not lock_free(paths)
        with pytest.raises(ClusterLocked):
            async with cluster_lock(paths, wait=False):
                pass
    assert lock_free(paths)
    with idle_check.cluster_lock(root) as taken:
        assert taken
