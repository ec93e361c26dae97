"""The test tiers' guard: a test that runs raycai's CLI as a process is outside the fast tier."""

from __future__ import annotations

from typing import Any

import pytest

from tests import helpers


class Item:
    """Stands in for a pytest item: its nodeid and its markers."""

    def __init__(self, *markers: str) -> None:
        self.nodeid = "tests/test_x.py::test_x"
        self.markers = markers

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.markers else None


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch):
    def set_running(*markers: str) -> None:
        monkeypatch.setattr(helpers, "RUNNING_TEST", Item(*markers))

    return set_running


def test_an_unmarked_test_may_not_run_the_cli_as_a_process(running) -> None:
    running()
    with pytest.raises(AssertionError, match="mark it `integration`"):
        helpers.raycai_argv("status", "demo")


@pytest.mark.parametrize("marker", ["integration", "ray", "slow"])
def test_a_marked_test_may(running, marker: str) -> None:
    running(marker)
    assert helpers.raycai_argv("status", "demo")[-2:] == ["status", "demo"]


def test_this_test_is_the_running_one() -> None:
    assert helpers.RUNNING_TEST is not None
    assert helpers.RUNNING_TEST.nodeid.endswith("test_this_test_is_the_running_one")
