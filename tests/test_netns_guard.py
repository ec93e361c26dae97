"""The `private_netns` guard: skip outside a private network namespace, fail under CI's flag.

The pytest runs below start no Ray: their tests only ask for the guard. They stand for a
machine where no namespace can be made by replacing the detection (`in_private_netns`), since
this suite itself runs inside one under ./dev test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_NETNS, in_private_netns

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

HOST_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs
    lo:  123456     789    0    0    0     0          0         0   123456     789    0
  eth0: 9876543    4321    0    0    0     0          0         0  1234567    2345    0
"""
PRIVATE_NET_DEV = "\n".join(HOST_NET_DEV.splitlines()[:3]) + "\n"

# Loaded by the inner pytest run: the suite's guard fixtures, on a "host" with eth0.
INNER_CONFTEST = """\
import tests.conftest as suite

suite.in_private_netns = lambda net_dev=None: False
from tests.conftest import private_netns, pytest_runtest_setup  # noqa: E402,F401
"""
INNER_TESTS = """\
from pathlib import Path

import pytest

def test_asks_for_the_namespace(private_netns):
    pass

@pytest.mark.ray
def test_marked_ray():
    pass

@pytest.fixture(scope="module")
def shared_cluster():
    Path("shared-cluster-started").write_text("")  # where a module would start Ray

@pytest.mark.ray
def test_marked_ray_on_a_shared_cluster(shared_cluster):
    pass

def test_needs_only_the_workspace():
    pass
"""


def test_only_loopback_means_a_private_namespace(tmp_path: Path) -> None:
    host, private = tmp_path / "host", tmp_path / "private"
    host.write_text(HOST_NET_DEV)
    private.write_text(PRIVATE_NET_DEV)
    assert in_private_netns(private)
    assert not in_private_netns(host)
    assert not in_private_netns(tmp_path / "missing")


def _inner_pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    ray: starts real Ray\n")
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    clean = {k: v for k, v in os.environ.items() if k not in (REQUIRE_NETNS, "RAYCAI_NETNS")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", str(tmp_path)],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_namespace_the_ray_tests_skip_and_say_why(tmp_path: Path) -> None:
    result = _inner_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 3 skipped" in result.stdout
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("needs a loopback-only network namespace" in s for s in skips)
    assert not (tmp_path / "shared-cluster-started").exists()


def test_under_the_ci_flag_they_fail_instead(tmp_path: Path) -> None:
    result = _inner_pytest(tmp_path, **{REQUIRE_NETNS: "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    # The guard fails in the set-up, which pytest counts as an error of the test.
    assert "1 passed, 3 errors" in result.stdout
    assert "ERROR test_inner.py::test_asks_for_the_namespace" in result.stdout
    assert "ERROR test_inner.py::test_marked_ray " in result.stdout
    assert "ERROR test_inner.py::test_marked_ray_on_a_shared_cluster" in result.stdout
    assert "RAYCAI_REQUIRE_NETNS=1: this must not be skipped" in result.stdout
    assert not (tmp_path / "shared-cluster-started").exists()  # the guard came first


@pytest.mark.parametrize("flag", ["0", "1"])
def test_raycai_netns_0_vouches_for_the_host_network(tmp_path: Path, flag: str) -> None:
    result = _inner_pytest(tmp_path, RAYCAI_NETNS="0", **{REQUIRE_NETNS: flag})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert (tmp_path / "shared-cluster-started").exists()
