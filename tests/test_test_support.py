"""The suite's own support: waits scaled by patience, and the stuck-task report."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.patience import patience
from tests.fixtures.stuck_tasks import dump_pending_tasks


def test_patience_scales_waits_and_refuses_a_bad_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYCAI_TEST_PATIENCE", raising=False)
    assert patience(20) == 20
    monkeypatch.setenv("RAYCAI_TEST_PATIENCE", "3")
    assert patience(20) == 60
    for bad in ("0.5", "three"):
        monkeypatch.setenv("RAYCAI_TEST_PATIENCE", bad)
        with pytest.raises(ValueError, match="RAYCAI_TEST_PATIENCE"):
            patience(20)


async def test_a_stuck_task_is_reported_down_to_the_await_that_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    never = asyncio.Event()

    async def waits_for_the_event() -> None:
        await never.wait()

    async def outer() -> None:
        await waits_for_the_event()

    task = asyncio.create_task(outer(), name="the stuck one")
    await asyncio.sleep(0)
    try:
        dump_pending_tasks("a test")
    finally:
        task.cancel()
    report = capsys.readouterr().err
    assert "a test:" in report and "the stuck one:" in report
    lines = report.splitlines()
    start = lines.index("the stuck one:")
    chain = lines[start + 1 : start + 4]
    assert [line.rsplit(" in ", 1)[1] for line in chain] == ["outer", "waits_for_the_event", "wait"]
