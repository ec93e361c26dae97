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


def test_module_seconds_sums_each_modules_phases_from_a_durations_report() -> None:
    from tests.module_seconds import module_seconds

    report = [
        "============================= slowest durations ==============================",
        "2.50s call     tests/test_a.py::test_one",
        "0.40s setup    tests/test_a.py::test_one",
        "1.00s teardown tests/tui/test_b.py::test_two[x-y]",
        "(12 durations < 0.005s hidden.  Use -vv to show these durations.)",
    ]
    assert module_seconds(report) == {"tests/test_a.py": 2.9, "tests/tui/test_b.py": 1.0}


def test_the_measured_module_seconds_name_modules_that_exist() -> None:
    import json
    from pathlib import Path

    root = Path(__file__).parents[1]
    measured = json.loads((root / "tests" / "module_seconds.json").read_text())
    assert len(measured) > 50
    assert [module for module in measured if not (root / module).is_file()] == []
