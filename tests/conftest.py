"""Shared fixtures. Workspace and Ray fixtures live in tests/fixtures/ and are plugged in here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.workspace"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO.parent / "shared" / "reference" / "cml_api_v2_subset.json"
SPEC_PATH = Path(os.environ.get("RAYCAI_CML_SPEC", DEFAULT_SPEC))


PROC_NET_DEV = Path("/proc/net/dev")
# Set by .ci/run: a test that needs the private namespace fails instead of skipping.
REQUIRE_NETNS = "RAYCAI_REQUIRE_NETNS"


def in_private_netns(net_dev: Path = PROC_NET_DEV) -> bool:
    """True when this process sees no network interface but loopback (a fresh namespace)."""
    # /proc/net/dev follows the network namespace (/sys/class/net would need a remount).
    try:
        lines = net_dev.read_text().splitlines()[2:]
    except OSError:
        return False
    interfaces = {line.split(":", 1)[0].strip() for line in lines if ":" in line}
    return interfaces == {"lo"}


def require_private_netns() -> None:
    """Return in a loopback-only network namespace (or with RAYCAI_NETNS=0); otherwise skip,
    or fail when RAYCAI_REQUIRE_NETNS=1 (CI). For whatever starts Ray, at any fixture scope."""
    if os.environ.get("RAYCAI_NETNS") == "0":
        return  # the user vouches that Ray may bind this machine's addresses
    if in_private_netns():
        return
    why = (
        "needs a loopback-only network namespace: run the suite with ./dev test "
        "(root + unshare), or RAYCAI_NETNS=0 on a machine where Ray may bind its address"
    )
    if os.environ.get(REQUIRE_NETNS) == "1":
        pytest.fail(f"{why} ({REQUIRE_NETNS}=1: this must not be skipped)", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def private_netns() -> None:
    """For tests that start Ray (./dev test makes the namespace). Tests marked `ray` are
    checked without asking; app processes of the local workspace do not need it."""
    require_private_netns()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """An async test that hangs says which await never returned (tests/fixtures/stuck_tasks)."""
    from tests.fixtures.stuck_tasks import dump_before_timeout

    with dump_before_timeout(item):
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `ray` starts real Ray: the guard runs before any of its fixtures, even
    module-scoped ones that start a shared cluster."""
    if item.get_closest_marker("ray") is not None:
        require_private_netns()
    from tests import helpers

    helpers.RUNNING_TEST = item


# RAYCAI_TEST_CPU_LOG=<file>: each module's CPU-seconds (this process's and those of its
# children reaped meanwhile, such as CLI processes and the local workspace's apps), appended
# to the file at the end of the session. .ci/run prints the costliest: CI is CPU-bound, so
# this, not wall time, says which modules its budget goes to. Ray's own processes are not
# children of the test and are not counted.
_MODULE_CPU: dict[str, float] = {}


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not os.environ.get("RAYCAI_TEST_CPU_LOG"):
        return (yield)
    started = _cpu_seconds()
    try:
        return (yield)
    finally:
        # RAYCAI_TEST_CPU_BY=test: each test's instead (a module-scoped fixture's cost falls
        # on the module's first test).
        by_test = os.environ.get("RAYCAI_TEST_CPU_BY") == "test"
        key = item.nodeid if by_test else item.nodeid.split("::", 1)[0]
        _MODULE_CPU[key] = _MODULE_CPU.get(key, 0.0) + _cpu_seconds() - started


def pytest_sessionfinish(session: pytest.Session) -> None:
    log = os.environ.get("RAYCAI_TEST_CPU_LOG")
    if log and _MODULE_CPU:
        lines = "".join(f"{cpu:.1f} {module}\n" for module, cpu in _MODULE_CPU.items())
        with open(log, "a", encoding="utf-8") as handle:  # one write per session (xdist worker)
            handle.write(lines)


@pytest.fixture(scope="session")
def cml_spec() -> dict:
    """The real CML API v2 Swagger subset from ../shared (never copied into this repo)."""
    import json

    if not SPEC_PATH.is_file():
        pytest.skip(f"the CML API spec is not at {SPEC_PATH} (set RAYCAI_CML_SPEC to its path)")
    return json.loads(SPEC_PATH.read_text())


def pytest_configure(config: pytest.Config) -> None:
    """Give this test session its own short TMPDIR (apps, launchers and Ray inherit it), so
    the Ray temp dirs the tests make never mix with a user's and all go at the end."""
    import tempfile

    if os.environ.get("RAYCAI_TEST_TMPDIR"):
        return
    root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    os.environ["RAYCAI_TEST_TMPDIR"] = os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None
    config.stash[_TMP_KEY] = root


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    root = config.stash.get(_TMP_KEY, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


_TMP_KEY = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (-p no:xdist) it is never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile` (how .ci/run spreads the real-Ray modules over two workers), except
    that some modules share a worker: those whose clusters run Serve (a head takes Serve's
    port 8000 when it is free at its start, so two heads started side by side could both take
    it) and those that start Ray at fixed loopback addresses of their own (127.0.0.2, ...;
    the local workspace's apps start at a random place in 127.0.0.0/8 instead)."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ServeModulesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            name = module.rsplit("/", 1)[-1]
            if name in SERVE_MODULES:
                return "serve-modules"
            return "fixed-address-modules" if name in FIXED_ADDRESS_MODULES else module

    return ServeModulesTogether(config, log)


# Real-Ray modules that start Serve on their cluster (see pytest_xdist_make_scheduler).
SERVE_MODULES = frozenset({"test_serve_ray.py", "test_work_ray.py"})
# Real-Ray modules that start Ray at fixed loopback addresses (not through the workspace).
FIXED_ADDRESS_MODULES = frozenset(
    {
        "test_ray_dashboard.py",
        "test_logs_screen.py",
        "test_launcher_scripts.py",
        "test_autoscaler_ray.py",  # its intruders' fixed addresses (R7)
    }
)


# Seconds each module took in a run of the tests without Ray on 2 cores (tests/module_seconds.py
# writes it): the order in which xdist hands the modules out, longest first. A module it does
# not name is estimated: a test that runs the local workspace or processes, or is slow, takes
# seconds; most others take milliseconds.
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
PROCESS_TEST_S = 2.0
OTHER_TEST_S = 0.02


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (`--no-loadscope-reorder`, as .ci/run and --fast run it), the modules in
    order of their cost, longest first, each module's tests in file order: a long module left
    for the end keeps one worker busy while the others idle (xdist's own order, by number of
    tests, left the few-but-slow workspace modules last; a count of workspace tests, the
    estimate before the measured seconds, left a 37 s module among the last). A plain run
    (the Ray lanes, one module at a time) keeps the file order."""
    if not hasattr(config, "workerinput"):
        return
    import json

    measured: dict[str, float] = json.loads(MODULE_SECONDS.read_text())
    estimated: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        heavy = (
            "local_workspace" in item.fixturenames
            or item.get_closest_marker("slow")
            or item.get_closest_marker("integration")
        )
        estimated[module] = estimated.get(module, 0.0) + (PROCESS_TEST_S if heavy else OTHER_TEST_S)
    cost = {module: measured.get(module, guess) for module, guess in estimated.items()}
    first_seen = {module: index for index, module in enumerate(cost)}

    def cost_order(item: pytest.Item) -> tuple[float, int]:
        module = item.nodeid.split("::", 1)[0]
        return (-cost[module], first_seen[module])

    items.sort(key=cost_order)  # stable: each module's tests keep their order
