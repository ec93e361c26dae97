"""The logs screen's pure parts: tail and follow with skip-ahead, ring, row index, inbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from raycai_core import logtail
from raycai_core.logtail import FileFollower, read_tail, tail_lines
from raycai_tui.screens.log_sources import ALL_NODES, LAUNCHER, LineInbox, default_ray_file
from raycai_tui.widgets.log_view import (
    NODE_COLORS,
    LineRing,
    Marker,
    Prefixed,
    RowIndex,
    clean_line,
    compile_filter,
    prefixed,
    skip_marker,
)


def write(path: Path, data: str | bytes, mode: str = "w") -> None:
    with path.open(mode + ("b" if isinstance(data, bytes) else "")) as f:
        f.write(data)


# -- read_tail / FileFollower -----------------------------------------------------------------


def test_read_tail_returns_complete_lines_and_where_to_follow(tmp_path: Path):
    path = tmp_path / "a.log"
    write(path, "".join(f"line {i}\n" for i in range(100_000)) + "partial")
    tail = read_tail(path, 3)
    assert tail.lines == ["line 99997", "line 99998", "line 99999"]
    assert tail.end == path.stat().st_size - len("partial")
    follower = FileFollower(path, offset=tail.end, inode=tail.inode)
    assert follower.read_new() == []  # the partial line waits for its newline
    write(path, " done\nnext\n", "a")
    assert follower.read_new() == ["partial done", "next"]
    # The CLI's tail_lines still shows the final partial line.
    assert tail_lines(path, 1) == ["next"]


@pytest.mark.parametrize(
    ("content", "lines"),
    [("", []), ("no newline", []), ("a\n", ["a"]), ("a\r\nb\r\n", ["a", "b"]), ("\n\n", ["", ""])],
)
def test_read_tail_small_files(tmp_path: Path, content: str, lines: list[str]):
    path = tmp_path / "a.log"
    write(path, content)
    assert read_tail(path, 10).lines == lines


def test_read_tail_reads_a_bounded_amount_from_the_end(tmp_path: Path):
    path = tmp_path / "a.log"
    write(path, "x" * 100_000 + "\n" + "y" * 10 + "\n")
    tail = read_tail(path, 5, max_bytes=1000)
    assert tail.lines == ["y" * 10]  # the 100k line starts before the window: left out
    with pytest.raises(FileNotFoundError):
        read_tail(tmp_path / "missing.log", 5)


def test_follower_skips_ahead_over_a_large_backlog_and_counts_exactly(tmp_path: Path):
    path = tmp_path / "a.log"
    write(path, "")
    follower = FileFollower(path, max_backlog=1000)
    write(path, "".join(f"{i:05d}\n" for i in range(10_000)))  # 60,000 bytes
    batch = follower.read_batch()
    assert batch.skipped + len(batch.lines) == 10_000 and not batch.skipped_estimated
    assert batch.lines[-1] == "09999" and len(batch.lines) <= 1000 // 6
    assert all(len(line) == 5 for line in batch.lines)  # starts at a line boundary
    assert int(batch.lines[0]) == batch.skipped


def test_follower_estimates_huge_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(logtail, "COUNT_LIMIT", 6000)
    path = tmp_path / "a.log"
    write(path, "")
    follower = FileFollower(path, max_backlog=600)
    write(path, "".join(f"{i:05d}\n" for i in range(10_000)))
    batch = follower.read_batch()
    assert batch.skipped_estimated and batch.skipped == 10_000 - len(batch.lines)


def test_follower_cuts_a_line_that_never_ends(tmp_path: Path):
    path = tmp_path / "a.log"
    write(path, "")
    follower = FileFollower(path, max_line=100)
    write(path, "z" * 250)
    assert follower.read_new() == ["z" * 100, "z" * 100]
    write(path, "\n", "a")
    assert follower.read_new() == ["z" * 50]


def test_follower_reports_truncation_replacement_and_absence(tmp_path: Path):
    path = tmp_path / "a.log"
    write(path, "one\ntwo\n")
    follower = FileFollower(path, from_end=False)
    assert follower.read_batch().lines == ["one", "two"]
    write(path, "3\n")
    batch = follower.read_batch()
    assert batch.reset == "truncated" and batch.lines == ["3"]
    path.rename(tmp_path / "a.log.1")
    assert follower.read_batch().missing
    write(path, "new\n")
    batch = follower.read_batch()
    assert batch.reset == "replaced" and batch.lines == ["new"]


# -- buffers ----------------------------------------------------------------------------------


def test_ring_keeps_the_newest_lines_within_lines_and_chars():
    ring = LineRing(max_lines=3, max_chars=100)
    ring.extend(["a", "b", "c", "d"])
    assert ring.snapshot() == ["b", "c", "d"] and (ring.first, ring.next) == (1, 4)
    assert ring[2] == "c"
    ring.extend(["x" * 60, "y" * 60])
    assert ring.snapshot() == ["y" * 60] and ring.chars == 60


def test_row_index_maps_rows_to_lines_and_drops_old_ones():
    index = RowIndex()
    index.extend([10, 11, 12], [1, 3, 2])  # rows 0 | 1 2 3 | 4 5
    assert index.rows == 6 and len(index) == 3
    assert [index.locate(row) for row in range(7)] == [
        (10, 0),
        (11, 0),
        (11, 1),
        (11, 2),
        (12, 0),
        (12, 1),
        None,
    ]
    assert index.prune(12) == 4 and index.rows == 2 and index.locate(0) == (12, 0)
    index.extend([13, 14])
    assert index.locate(2) == (13, 0) and index.row_of(14) == 3 and index.row_of(11) == 0


def test_inbox_tells_once_per_batch_and_drops_the_oldest_with_a_count():
    inbox = LineInbox(capacity=5)
    assert inbox.put(["a", "b"]) is True
    assert inbox.put(["c"]) is False  # already waiting: no second notification
    assert inbox.take() == ["a", "b", "c"] and inbox.take() == []
    inbox.put(["1", "2", "3"])
    inbox.put([skip_marker(100), "4", "5", "6"])  # "1" and "2" dropped
    inbox.put(["7", "8"])  # "3" dropped, then the marker: it stands for 100 lines
    lines = inbox.take()
    assert isinstance(lines[0], Marker) and lines[0].skipped == 103
    assert lines[1:] == ["4", "5", "6", "7", "8"]
    inbox.put([str(i) for i in range(12)])  # more than the capacity at once
    lines = inbox.take()
    assert lines[0].skipped == 7 and lines[1:] == ["7", "8", "9", "10", "11"]


def test_clean_line_and_filters():
    assert clean_line("a\tb") == "a       b"
    assert clean_line("\x1b[31mred\x1b[0m \x1b]0;title\x07ok\x00") == "red ok\ufffd"
    assert clean_line("x" * 10, max_chars=4) == "xxxx…"
    assert compile_filter("") is None
    assert compile_filter("error").search("ERROR here")  # lower case: any case
    assert not compile_filter("Error").search("ERROR here")  # a capital: exact case
    assert compile_filter("worker[").search("worker[3]")  # not a regex: literal text
    assert compile_filter(r"exit(ed)? \d").search("exited 1")


def test_default_ray_file():
    assert default_ray_file({"raylet": ["raylet.err", "raylet.out"], "gcs": ["gcs.out"]}) == (
        "raylet.out"
    )
    assert default_ray_file({"gcs": ["gcs.out"], "raylet": ["raylet.err"]}) == "raylet.err"
    assert default_ray_file({"gcs": ["gcs.out"]}) == "gcs.out"
    assert default_ray_file({}) is None


def test_prefixed_lines_are_plain_strings_that_know_their_node_color():
    line = prefixed("worker-1 | hello", 8, NODE_COLORS + 2)
    assert line == "worker-1 | hello" and isinstance(line, Prefixed)
    assert (line.prefix, line.color) == (8, 2)  # colors go round
    other = prefixed("worker-2 | bye", 8, 2)
    assert type(other) is type(line)  # one class per (name length, color): no per-line dict
    assert not hasattr(line, "__dict__")
    assert prefixed("head | x", 4, 0).prefix == 4


def test_sources_name_themselves():
    assert ALL_NODES.label == "all nodes' launcher logs" and ALL_NODES.slug == "all-nodes"
    assert LAUNCHER.label == "launcher log" and LAUNCHER.slug == "launcher"
