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


def in_private_netns() -> bool:
    """True when this process sees no network interface but loopback (a fresh namespace)."""
    # /proc/net/dev follows the network namespace (/sys/class/net would need a remount).
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    interfaces = {line.split(":", 1)[0].strip() for line in lines if ":" in line}
    return interfaces == {"lo"}


@pytest.fixture
def private_netns() -> None:
    """Skip unless running in a loopback-only network namespace (./dev test makes one)."""
    if os.environ.get("RAYCAI_NETNS") == "0":
        return  # the user vouches that Ray may bind this machine's addresses
    if not in_private_netns():
        pytest.skip(
            "needs a loopback-only network namespace: run the suite with ./dev test "
            "(root + unshare), or RAYCAI_NETNS=0 on a machine where Ray may bind its address"
        )


@pytest.fixture(scope="session")
def cml_spec() -> dict:
    """The real CML API v2 Swagger subset from ../shared (never copied into this repo)."""
    import json

    if not SPEC_PATH.is_file():
        pytest.skip(f"the CML API spec is not at {SPEC_PATH} (set RAYCAI_CML_SPEC to its path)")
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="session", autouse=True)
def _remove_ray_temp_dirs() -> Iterator[None]:
    """Ray's per-node temp dirs (/tmp/rc-*) made by this session's clusters go at the end."""
    import shutil
    import tempfile
    import time

    started = time.time()
    yield
    for path in Path(tempfile.gettempdir()).glob("rc-*"):
        try:
            if path.is_dir() and path.stat().st_ctime >= started - 1:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
