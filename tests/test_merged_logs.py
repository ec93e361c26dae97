"""Every node's launcher log merged by time: order, ties, lines without time, new files,
bounded reads."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from raycai_core.merged_logs import (
    MergedLogs,
    NodeLine,
    describe,
    node_logs,
    time_key,
    with_prefix,
)


def stamp(second: int, ms: int = 0) -> str:
    return f"2025-01-01T10:00:{second:02d}.{ms:03d}Z"


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as f:
        f.write("".join(f"{line}\n" for line in lines))


def texts(lines: list[NodeLine]) -> list[tuple[str, str]]:
    return [(line.node, line.text) for line in lines]


def merged(logs: Path, count: int = 100, **kwargs) -> MergedLogs:
    return MergedLogs(logs, rescan_s=0, **kwargs)


def test_time_key_reads_the_launcher_stamp_and_iso_like_stamps():
    assert time_key(f"{stamp(5, 120)} [launcher] phase joined") == "2025-01-01T10:00:05.120"
    assert time_key("2025-01-01 10:00:05,1 INFO x") == "2025-01-01T10:00:05.100"
    assert time_key("2025-01-01T10:00:05 no fraction") == "2025-01-01T10:00:05.000"
    for line in ("", "Traceback (most recent call last):", "  File x, line 3", "2025-01-01"):
        assert time_key(line) is None


def test_node_logs_lists_launcher_logs_in_node_order(tmp_path: Path):
    logs = tmp_path / "logs"
    for name in ("worker-10.log", "worker-2.log", "head.log", "worker-1.log", "head.log.1"):
        write(logs / name, [])
    write(logs / "head-launcher-20250101-100000.txt", ["a saved log, not a launcher log"])
    assert list(node_logs(logs)) == ["head", "worker-1", "worker-2", "worker-10"]
    assert node_logs(tmp_path / "missing") == {}


def test_tails_are_interleaved_by_time_and_ties_go_to_the_node_first_in_order(tmp_path: Path):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"{stamp(1)} [launcher] h1", f"{stamp(3)} [ray] h3"])
    write(logs / "worker-1.log", [f"{stamp(2)} [launcher] w1-2", f"{stamp(3)} [launcher] w1-3"])
    write(logs / "worker-10.log", [f"{stamp(0)} [launcher] w10-0", f"{stamp(3)} [launcher] w10"])
    write(logs / "worker-2.log", [f"{stamp(3)} [launcher] w2-3", f"{stamp(4)} [launcher] w2-4"])
    lines = merged(logs).tail(100)
    assert [line.text.split()[-1] for line in lines] == [
        "w10-0",
        "h1",
        "w1-2",
        "h3",  # the four lines at :03 in node order: head, worker-1, worker-2, worker-10
        "w1-3",
        "w2-3",
        "w10",
        "w2-4",
    ]


def test_the_tail_is_the_newest_lines_of_all_nodes_together(tmp_path: Path):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"{stamp(s)} head {s}" for s in range(0, 60, 2)])
    write(logs / "worker-1.log", [f"{stamp(s)} worker {s}" for s in range(1, 60, 2)])
    write(logs / "worker-2.log", [f"{stamp(s)} old {s}" for s in range(5)])
    lines = merged(logs).tail(6)
    assert [line.text[25:] for line in lines] == [
        "head 54",
        "worker 55",
        "head 56",
        "worker 57",
        "head 58",
        "worker 59",
    ]
    assert merged(logs).tail(0) == []


def test_lines_without_a_time_stay_after_the_previous_line_of_their_file(tmp_path: Path):
    logs = tmp_path / "logs"
    write(
        logs / "head.log",
        [
            "no time before any timed line",
            f"{stamp(1)} [launcher] h1",
            "Traceback (most recent call last):",
            '  File "x.py", line 3',
            f"{stamp(4)} [launcher] h4",
        ],
    )
    write(logs / "worker-1.log", [f"{stamp(0)} w0", f"{stamp(2)} w2", "w2 continued"])
    follow = merged(logs)
    assert texts(follow.tail(100)) == [
        ("worker-1", f"{stamp(0)} w0"),
        ("head", "no time before any timed line"),  # just before its file's first timed line
        ("head", f"{stamp(1)} [launcher] h1"),
        ("head", "Traceback (most recent call last):"),
        ("head", '  File "x.py", line 3'),
        ("worker-1", f"{stamp(2)} w2"),
        ("worker-1", "w2 continued"),
        ("head", f"{stamp(4)} [launcher] h4"),
    ]
    # Following: an untimed line read in a later round takes its file's last time.
    write(logs / "worker-1.log", ["still w2", f"{stamp(5)} w5"])
    write(logs / "head.log", [f"{stamp(3)} h3 late", "h3 continued"])
    batch = follow.read_batch()
    assert texts(batch.lines) == [
        ("worker-1", "still w2"),  # at :02, worker-1's last time
        ("head", f"{stamp(3)} h3 late"),
        ("head", "h3 continued"),
        ("worker-1", f"{stamp(5)} w5"),
    ]


def test_following_merges_each_round_and_goes_on_where_the_tails_stopped(tmp_path: Path):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"{stamp(0)} h0"])
    (logs / "worker-1.log").write_text(f"{stamp(0, 500)} w0\n{stamp(1)} half")
    follow = merged(logs)
    assert texts(follow.tail(10)) == [
        ("head", f"{stamp(0)} h0"),
        ("worker-1", f"{stamp(0, 500)} w0"),
    ]
    assert follow.read_batch().lines == []
    write(logs / "worker-1.log", [" done", f"{stamp(3)} w3"])
    write(logs / "head.log", [f"{stamp(2)} h2"])
    batch = follow.read_batch()
    assert texts(batch.lines) == [
        ("worker-1", f"{stamp(1)} half done"),
        ("head", f"{stamp(2)} h2"),
        ("worker-1", f"{stamp(3)} w3"),
    ]
    assert batch.notes == [] and not batch.behind


def test_a_file_that_appears_later_is_followed_from_its_first_line(tmp_path: Path):
    logs = tmp_path / "logs"
    follow = merged(logs)  # the logs directory does not even exist yet
    assert follow.tail(3) == [] and follow.nodes == []
    write(logs / "head.log", [f"{stamp(0)} h0"])
    batch = follow.read_batch()
    assert texts(batch.lines) == [("head", f"{stamp(0)} h0")]
    assert [describe(note) for note in batch.notes] == ["head.log appeared; following it"]

    write(logs / "worker-3.log", [f"{stamp(s)} w{s}" for s in range(1, 6)])
    write(logs / "head.log", [f"{stamp(3, 500)} h3"])
    batch = follow.read_batch()
    # A new file starts with its own last `count` lines, merged with the others' new lines.
    assert [line.text.split()[-1] for line in batch.lines] == ["w3", "h3", "w4", "w5"]
    assert follow.nodes == ["head", "worker-3"] and follow.width == len("worker-3")
    write(logs / "worker-3.log", [f"{stamp(6)} w6"])
    assert texts(follow.read_batch().lines) == [("worker-3", f"{stamp(6)} w6")]


def test_rescans_wait_for_their_interval(tmp_path: Path):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"{stamp(0)} h0"])
    follow = MergedLogs(logs, rescan_s=3600)
    follow.tail(10)
    write(logs / "worker-1.log", [f"{stamp(1)} w1"])
    assert follow.read_batch().lines == [] and follow.nodes == ["head"]
    follow.rescan_s = 0
    assert texts(follow.read_batch().lines) == [("worker-1", f"{stamp(1)} w1")]


def test_truncation_replacement_and_removal_are_noted(tmp_path: Path):
    logs = tmp_path / "logs"
    head = logs / "head.log"
    write(head, [f"{stamp(0)} h0", f"{stamp(1)} h1"])
    follow = merged(logs)
    follow.tail(10)
    write(head, [f"{stamp(2)} after truncation"], mode="w")
    batch = follow.read_batch()
    assert [note.kind for note in batch.notes] == ["truncated"]
    assert texts(batch.lines) == [("head", f"{stamp(2)} after truncation")]
    head.rename(logs / "head.log.1")
    assert [note.kind for note in follow.read_batch().notes] == ["gone"]
    assert follow.read_batch().notes == []  # said once
    write(head, [f"{stamp(3)} rotated"])
    batch = follow.read_batch()
    assert [note.kind for note in batch.notes] == ["replaced"]
    assert texts(batch.lines) == [("head", f"{stamp(3)} rotated")]


def test_a_large_file_costs_only_its_tail_and_a_flood_is_skipped_not_read(tmp_path: Path):
    logs = tmp_path / "logs"
    big = logs / "head.log"
    big.parent.mkdir()
    line = f"{stamp(0)} [ray] " + "x" * 90 + "\n"  # 122 bytes
    with big.open("w") as f:
        for _ in range(50):
            f.write(line * 10_000)  # 60 MB
    write(logs / "worker-1.log", [f"{stamp(1)} w1"])
    follow = merged(logs, max_read=256 * 1024, max_backlog=256 * 1024)
    tracemalloc.start()
    try:
        tail = follow.tail(500)
        _, tail_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tail) == 500
    assert tail[-1] == NodeLine("2025-01-01T10:00:01.000", "worker-1", f"{stamp(1)} w1")
    with big.open("a") as f:
        f.write(line * 100_000)  # 12 MB appended at once: more than the backlog allows
    tracemalloc.start()
    try:
        batch = follow.read_batch()
        _, batch_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Neither the 60 MB file nor the 12 MB flood were read whole.
    assert tail_peak < 2 * 2**20 and batch_peak < 4 * 2**20
    skipped = [note for note in batch.notes if note.kind == "skipped"]
    assert len(skipped) == 1 and skipped[0].node == "head"
    assert skipped[0].skipped + len(batch.lines) == 100_000
    assert "lines of head skipped" in describe(skipped[0])


def test_prefix_pads_the_node_name():
    assert with_prefix(NodeLine("", "head", "hello"), 8) == "head     | hello"
    assert with_prefix(NodeLine("", "worker-1", "hi"), 8) == "worker-1 | hi"


@pytest.mark.parametrize("count", [1, 7])
def test_untimed_files_keep_file_order(tmp_path: Path, count: int):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"plain {i}" for i in range(10)])
    lines = merged(logs).tail(count)
    assert [line.text for line in lines] == [f"plain {i}" for i in range(10 - count, 10)]


def test_untimed_lines_at_the_top_of_a_tail_take_the_time_of_the_line_before_them(
    tmp_path: Path,
):
    logs = tmp_path / "logs"
    write(logs / "head.log", [f"{stamp(1)} h1", "h1 continued", f"{stamp(5)} h5"])
    write(logs / "worker-1.log", [f"{stamp(3)} w3"])
    # head's tail of 2 starts with "h1 continued": it belongs at :01, before worker-1's :03.
    assert texts(merged(logs).tail(2)) == [
        ("worker-1", f"{stamp(3)} w3"),
        ("head", f"{stamp(5)} h5"),
    ]
    assert texts(merged(logs).tail(3)) == [
        ("head", "h1 continued"),
        ("worker-1", f"{stamp(3)} w3"),
        ("head", f"{stamp(5)} h5"),
    ]


def test_the_read_budget_is_shared_by_all_files(tmp_path: Path):
    logs = tmp_path / "logs"
    nodes = ["head"] + [f"worker-{k}" for k in range(1, 10)]
    for node in nodes:
        write(logs / f"{node}.log", [])
    follow = merged(logs, max_read=2**20, max_backlog=2**20)
    follow.tail(10)
    line = f"{stamp(0)} [ray] " + "y" * 90 + "\n"  # 122 bytes
    for node in nodes:
        with (logs / f"{node}.log").open("a") as f:
            f.write(line * 20_000)  # 2.4 MB each, 24 MB in all
    tracemalloc.start()
    try:
        batch = follow.read_batch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    share = 2**20 // len(nodes)
    for node in nodes:
        read = [item for item in batch.lines if item.node == node]
        assert 0 < len(read) * len(line) <= share  # each file got its share of 1 MB
    assert {note.node for note in batch.notes if note.kind == "skipped"} == set(nodes)
    assert peak < 8 * 2**20  # a round holds about the shared budget, not 10 backlogs
