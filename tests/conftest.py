"""Shared fixtures. Workspace and Ray fixtures live in tests/fixtures/ and are plugged in here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = Path(
    os.environ.get("RAYCAI_CML_SPEC", REPO.parent / "shared" / "reference" / "cml_api_v2_subset.json")
)


def in_private_netns() -> bool:
    """True when this process sees no network interface but loopback (a fresh namespace)."""
    try:
        interfaces = set(os.listdir("/sys/class/net"))
    except OSError:
        return False
    return interfaces == {"lo"}


@pytest.fixture
def private_netns() -> None:
    """Skip unless running in a loopback-only network namespace (./dev test makes one)."""
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
