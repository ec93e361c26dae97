"""The CLI's log tail and follow: the final partial line shown, nothing lost in between."""

from __future__ import annotations

from pathlib import Path

from raycai_core.logtail import follow_file, read_tail, tail_lines


def test_tail_lines_includes_a_final_line_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("a\nb\nc\n")
    assert tail_lines(path, 2) == ["b", "c"]
    assert tail_lines(path, 10) == ["a", "b", "c"]
    path.write_text("a\nb\npartial")
    assert tail_lines(path, 2) == ["b", "partial"]
    assert tail_lines(path, 0) == []
    path.write_text("")
    assert tail_lines(path, 3) == []


def test_following_goes_on_where_the_tail_stopped(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("one\ntwo\nhalf")
    tail = read_tail(path, 5)
    assert tail.lines == ["one", "two"]
    with path.open("a") as handle:  # written after the tail, before the follow starts
        handle.write(" done\nthree\n")
    lines = follow_file(path, poll_s=0.01, after=tail)
    assert [next(lines), next(lines)] == ["half done", "three"]
