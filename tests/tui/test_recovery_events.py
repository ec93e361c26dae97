"""raycai-tui says what recovered by itself: between two polls, a node record that counts a
new restart of Ray in place (or the platform's, or a Serve config re-applied) becomes an
event of its cluster (the events list and a notification)."""

from __future__ import annotations

from dataclasses import replace

from raycai_core.cluster.records import NodeRecord
from raycai_tui.app import RaycaiApp, Settings
from raycai_tui.services import Snapshot
from tests.tui.fixed_data import snapshot


def with_head_record(base: Snapshot, **fields: object) -> Snapshot:
    head = NodeRecord.from_json({"node": "head", "role": "head", "phase": "running", **fields})
    assert head is not None
    summaries = [
        replace(s, records={**s.records, "head": head}) if s.name == "demo" else s
        for s in base.summaries
    ]
    return replace(base, summaries=summaries)


async def test_a_head_restarted_in_place_is_an_event_once() -> None:
    crash = {"at": 1000.0, "why": "Ray exited with code 1: gcs_server (exit code -9) died",
             "state_kept": True}  # fmt: skip
    app = RaycaiApp(Settings(poll_s=0))
    async with app.run_test(size=(160, 40)) as pilot:
        app.apply_snapshot(with_head_record(snapshot()))
        await pilot.pause()
        assert app.events.of("demo") == []  # the first reading is the baseline
        after = with_head_record(snapshot(), ray_restarts=1, recoveries=[crash])
        app.apply_snapshot(after)
        app.apply_snapshot(after)  # the next poll: nothing new
        await pilot.pause()
        texts = [event.text for event in app.events.of("demo")]
        assert texts == [
            "head restarted (state kept) after Ray exited with code 1: gcs_server "
            "(exit code -9) died"
        ]
        moved = with_head_record(
            snapshot(), ray_restarts=1, recoveries=[crash], restarts=1,
            serve_reapplied={"at": 2000.0, "apps": 2},
        )  # fmt: skip
        app.apply_snapshot(moved)
        await pilot.pause()
        texts = [event.text for event in app.events.of("demo")][1:]
        assert texts == [
            "head: the platform restarted its application",
            "head restarted on a new pod, Serve config re-applied (2 applications)",
        ]
