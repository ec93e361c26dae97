"""The programs that run on a CML head or worker (the launchers, the head proxy, the
autoscaler's provider and runner) are files in the cluster directory, run by a Python that has
Ray but not raycai. Each rendered file is imported here in a fresh interpreter where every
`raycai*` module is out of
reach, as on a CML head; an import of raycai anywhere at module level fails the test.
(`./dev lint`'s contract checks the same for imports inside functions.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raycai_core.launcher.render import render_cluster
from raycai_core.spec import parse_spec

pytestmark = pytest.mark.integration

# Runs in the child: raycai, raycai_core and raycai_tui cannot be imported, whatever the
# installation (an editable install puts a finder on sys.meta_path; this one comes first).
IMPORT_WITHOUT_RAYCAI = r"""
import importlib.abc, importlib.util, json, sys

class NoRaycai(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("raycai", "raycai_core", "raycai_tui"):
            raise ModuleNotFoundError(f"No module named {name!r} (raycai is not installed here)")
        return None

sys.meta_path.insert(0, NoRaycai())
results = {}
for index, path in enumerate(sys.argv[1:]):
    spec = importlib.util.spec_from_file_location(f"head_program_{index}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        results[path] = f"{type(exc).__name__}: {exc}"
    else:
        loaded = sorted(m for m in sys.modules if m.split(".")[0].startswith("raycai"))
        results[path] = "ok" if not loaded else f"loaded {loaded}"
print(json.dumps(results))
"""


def _import_without_raycai(files: list[Path], cwd: Path) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_WITHOUT_RAYCAI, *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project")
    spec = parse_spec(
        {
            "name": "demo",
            "head": {"runtime_identifier": "img", "cpu": 1, "memory": 2},
            "workers": {"min": 0, "max": 2, "cpu": 1, "memory": 2},
            "idle_suspend_minutes": 30,
        }
    )
    return render_cluster(project, spec).paths.root


def test_every_program_in_the_cluster_directory_imports_without_raycai(cluster_dir: Path) -> None:
    programs = sorted(cluster_dir.glob("*.py"))
    names = {path.name for path in programs}
    # the launchers, the head proxy, the Ray log copier (every node's launcher loads it) and,
    # for an autoscaled cluster, the provider and the monitor's runner
    assert names == {
        "head.py",
        "worker.py",
        "raycai_head_proxy.py",
        "raycai_cml_provider.py",
        "raycai_autoscaler.py",
        "raycai_ray_logs.py",
        "raycai_idle_suspend.py",  # when the spec sets idle_suspend_minutes
    }, names
    results = _import_without_raycai(programs, cwd=cluster_dir)
    assert results == {str(path): "ok" for path in programs}


def test_a_program_that_imports_raycai_is_caught(cluster_dir: Path, tmp_path: Path) -> None:
    """The harness itself: what a head-side program importing raycai_core would do on a head."""
    leaky = tmp_path / "leaky.py"
    leaky.write_text((cluster_dir / "worker.py").read_text() + "\nimport raycai_core.naming\n")
    results = _import_without_raycai([leaky], cwd=tmp_path)
    assert results[str(leaky)].startswith("ModuleNotFoundError"), results
