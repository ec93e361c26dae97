"""The pieces of recovery in place that need no Ray: which Ray sessions a launcher keeps, its
restart budget, and what raycai says about a recovery (records, events, `raycai status`).
The whole of it on real Ray: tests/serving/test_recovery_ray.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

from raycai_core.cli.render import recovery_lines
from raycai_core.cluster.records import NodeRecord, recovery_notes
from raycai_core.launcher import template


def sessions(temp_dir: Path, count: int) -> list[Path]:
    made = []
    for index in range(count):
        session = temp_dir / f"session_2026-12-07_00-00-{index:02d}_000000_1"
        (session / "logs").mkdir(parents=True)
        made.append(session)
    return made


def test_crashed_sessions_are_kept_and_the_rest_pruned(tmp_path: Path) -> None:
    made = sessions(tmp_path, 10)
    for session in made[:7]:  # seven crashed; the newest five of them stay
        os.symlink(session, tmp_path / "session_latest")
        logs = template.mark_crashed(str(tmp_path), f"Ray exited in {session.name}")
        assert logs == str(session / "logs")
        (tmp_path / "session_latest").unlink()
    template.prune_sessions(str(tmp_path))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([s.name for s in made[2:7]] + [made[-1].name])
    assert "Ray exited in" in (made[6] / template.CRASH_MARK).read_text()


def test_no_session_to_mark(tmp_path: Path) -> None:
    assert template.mark_crashed(str(tmp_path), "why") is None


def launcher(tmp_path: Path, **timing: float) -> SimpleNamespace:
    status = template.Status(str(tmp_path / "head.json"), {"node": "head"})
    return SimpleNamespace(timing={**template.DEFAULT_TIMING, **timing}, status=status)


def test_restarts_back_off_then_stop_at_the_budget(tmp_path: Path) -> None:
    owner = launcher(tmp_path, recover_max=3, recover_backoff_s=0.5, max_backoff_s=1.5)
    recoveries = template.Recoveries(owner)  # type: ignore[arg-type]
    delays = []
    while (delay := recoveries.next_delay()) is not None:
        delays.append(delay)
        owner.status.update(**recoveries.record(f"crash {len(delays)}", "/tmp/logs", True))
    assert delays == [0.5, 1.0, 1.5]  # doubling, capped
    record = json.loads((tmp_path / "head.json").read_text())
    assert record["ray_restarts"] == 3
    assert [r["why"] for r in record["recoveries"]] == ["crash 1", "crash 2", "crash 3"]
    assert record["recoveries"][-1]["state_kept"] is True
    assert "3 times in 600 s" in recoveries.give_up()


def test_restarts_outside_the_window_do_not_count(tmp_path: Path) -> None:
    owner = launcher(tmp_path, recover_max=1, recover_window_s=0.2)
    recoveries = template.Recoveries(owner)  # type: ignore[arg-type]
    assert recoveries.next_delay() is not None
    recoveries.record("first", None)
    assert recoveries.next_delay() is None
    time.sleep(0.3)
    assert recoveries.next_delay() is not None  # the window moved on


def record(**fields: object) -> NodeRecord:
    found = NodeRecord.from_json({"node": "head", "role": "head", "phase": "running", **fields})
    assert found is not None
    return found


def test_recovery_notes_say_what_came_back_once() -> None:
    crash = {"at": 100.0, "why": "Ray exited with code 1: gcs_server [exit code=-9]",
             "state_kept": True, "logs": "/tmp/rc/session_1/logs"}  # fmt: skip
    before = {"head": record(), "worker-1": record(node="worker-1")}
    after = {"head": record(ray_restarts=1, recoveries=[crash]), "worker-1": before["worker-1"]}
    notes = recovery_notes(before, after)
    assert notes == [
        ("head", "head restarted (state kept) after " + crash["why"], "warning"),
    ]
    assert recovery_notes(after, after) == []  # said once
    assert recovery_notes({}, after) == []  # the first reading is the baseline

    moved = {
        "head": record(restarts=1, serve_reapplied={"at": 200.0, "apps": 2}),
        "worker-1": before["worker-1"],
    }
    texts = [text for _, text, _ in recovery_notes(after, moved)]
    assert texts == [
        "head: the platform restarted its application",
        "head restarted on a new pod, Serve config re-applied (2 applications)",
    ]


def test_a_broken_recoveries_field_reads_as_none() -> None:
    assert record(recoveries="nonsense").recoveries == ()
    assert record(recoveries=[{"why": "no time"}]).recoveries == ()
    assert record(serve_reapplied={"apps": 2}).serve_reapplied is None


def test_status_lines_say_how_often_why_and_where_the_logs_are() -> None:
    crash = {"at": 100.0, "why": "Ray exited with code 1: raylet [exit code=-9]",
             "logs": "/tmp/rc-1/session_x/logs"}  # fmt: skip
    rows = [
        SimpleNamespace(node="head", record=record()),
        SimpleNamespace(
            node="worker-1", record=record(node="worker-1", ray_restarts=2, recoveries=[crash])
        ),
    ]
    lines = recovery_lines(SimpleNamespace(rows=rows))  # type: ignore[arg-type]
    assert lines[0] == "  worker-1: Ray restarted in place 2x"
    assert lines[1].endswith("worker-1: Ray restarted in place after " + crash["why"])
    assert lines[2] == "    the crashed session's Ray logs: /tmp/rc-1/session_x/logs"
    assert len(lines) == 3  # nothing for a node that never restarted


def test_the_dead_ray_process_is_named_from_ray_starts_output() -> None:
    gcs = (
        "2026-12-07 00:58:41,375 ERR scripts.py:128 -- ----- END gcs_server.out tail "
        "(exit code(s)=-9 (signal 9)) -----"
    )
    assert template.dead_ray_process(gcs) == "gcs_server (exit code -9)"
    assert template.dead_ray_process("  raylet [exit code=-9]") == "raylet (exit code -9)"
    assert template.dead_ray_process("Local node IP: 127.0.0.2") is None
