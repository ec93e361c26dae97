"""Logs screen: real files followed by real workers, driven with Pilot; one real-Ray test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.style import Style
from textual import events
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import OptionList

from raycai_core.credentials import Secret
from raycai_core.ray.client import RayClient
from raycai_tui.screens.log_sources import FollowSettings
from raycai_tui.screens.logs import LogsScreen, RayLogPicker
from raycai_tui.widgets.log_view import Marker
from tests.tui.support import notified, until


class LogsApp(App[None]):
    """Stands in for raycai-tui: pushes one LogsScreen over its default screen."""

    def __init__(self, screen: LogsScreen) -> None:
        super().__init__()
        self.logs = screen

    def on_mount(self) -> None:
        self.push_screen(self.logs)


def launcher_log(root: Path, lines: int = 0, text: str = "line {i}") -> Path:
    path = root / ".raycai" / "clusters" / "c1" / "logs" / "head.log"
    path.parent.mkdir(parents=True)
    path.write_text("".join(text.format(i=i) + "\n" for i in range(lines)))
    return path


def make_app(path: Path, **kwargs) -> LogsApp:
    kwargs.setdefault("ray_client", None)
    kwargs.setdefault("ray_node_id", None)
    return LogsApp(LogsScreen(cluster="c1", node="head", launcher_log=path, **kwargs))


def append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))


async def test_opens_with_the_tail_of_the_file(tmp_path: Path):
    path = launcher_log(tmp_path, 5000)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count, "the tail")
        assert view.lines() == [f"line {i}" for i in range(4000, 5000)]
        await pilot.pause()
        assert view.visible_lines()[-1] == "line 4999"  # follow is on: the bottom is shown
        assert view.follow and app.logs.source.kind == "launcher"


async def test_new_lines_appear_and_stick_to_the_bottom_when_following(tmp_path: Path):
    path = launcher_log(tmp_path, 100)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 100, "the tail")
        append(path, [f"new {i}" for i in range(200)])
        await until(pilot, lambda: view.line_count == 300, "the new lines")
        await pilot.pause()
        assert view.visible_lines()[-1] == "new 199"
        assert view.scroll_y == view.max_scroll_y > 0


async def test_with_follow_off_the_view_holds_still_while_lines_are_collected(tmp_path: Path):
    path = launcher_log(tmp_path, 500)
    app = make_app(path, max_lines=500)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 500, "the tail")
        await pilot.press("f")
        assert not view.follow
        await pilot.press("pageup")
        await pilot.pause()
        shown, scroll_y = view.visible_lines(), view.scroll_y
        assert shown[0] != "line 0"  # the view is neither at the top nor at the bottom

        # 100 new lines push the 100 oldest out of the 500-line buffer: the same lines stay
        # on screen (the scroll offset follows them), and the new ones are collected.
        append(path, [f"new {i}" for i in range(100)])
        await until(pilot, lambda: view.lines()[-1] == "new 99", "the new lines")
        await pilot.pause()
        assert view.visible_lines() == shown
        assert view.scroll_y == scroll_y - 100
        assert view.line_count == 500
        assert "follow off" in str(app.logs.status.render())

        await pilot.press("f")
        await pilot.pause()
        assert view.follow and view.visible_lines()[-1] == "new 99"


async def test_user_scrolling_up_pauses_following(tmp_path: Path):
    path = launcher_log(tmp_path, 300)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 300, "the tail")
        await pilot.press("up")
        assert not view.follow
        await pilot.press("end")
        assert view.follow
        view.post_message(events.MouseScrollUp(view, 5, 5, 0, -1, 0, False, False, False))
        await pilot.pause()
        assert not view.follow and view.scroll_y < view.max_scroll_y


async def test_wrap_toggles(tmp_path: Path):
    path = launcher_log(tmp_path, 10, text="{i} " + "x" * 250)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 10, "the tail")
        assert not view.wrap and view.virtual_size.height == 10
        assert view.virtual_size.width > 250  # long lines scroll sideways
        await pilot.press("w")
        assert view.wrap
        await pilot.pause()
        width = view.scrollable_content_region.width
        assert view.virtual_size.height == 10 * -(-252 // width)  # every line takes rows
        assert "wrap on" in str(app.logs.status.render())
        await pilot.press("w")
        assert not view.wrap and view.virtual_size.height == 10


def _styles_of(view, text: str) -> list[Style]:
    """Styles of the rendered segments whose text is `text`, over the visible rows."""
    return [
        segment.style
        for y in range(view.scrollable_content_region.height)
        for segment in view.render_line(y)
        if segment.text == text and segment.style is not None
    ]


async def test_filter_highlights_matches_and_can_hide_the_others(tmp_path: Path):
    path = launcher_log(tmp_path)
    append(path, [f"{'ERROR' if i % 3 == 0 else 'INFO'} event {i}" for i in range(30)])
    app = make_app(path)
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 30, "the tail")
        plain = _styles_of(view, "INFO event 1")
        await pilot.press("slash")
        assert app.logs.filter_input.has_focus
        await pilot.press(*"error", "enter")
        assert view.filter_text == "error" and view.match_count == 10
        assert view.has_focus  # enter hands the keys back to the log
        await pilot.pause()
        highlighted = _styles_of(view, "ERROR")
        assert len(highlighted) == 10
        assert all(style != plain[0] for style in highlighted)
        assert "filter 'error': 10 matches" in str(app.logs.status.render())

        await pilot.press("m")  # only the matching lines
        await pilot.pause()
        assert view.only_matching and view.displayed_count == 10
        assert all(line.startswith("ERROR") for line in view.visible_lines())
        append(path, ["INFO quiet", "ERROR loud"])
        await until(pilot, lambda: view.match_count == 11, "the new match")
        assert view.displayed_count == 11 and view.line_count == 32

        await pilot.press("m", "slash", "escape")  # esc in the filter field clears the filter
        assert view.filter_text == "" and view.displayed_count == 32
        assert isinstance(app.screen, LogsScreen)


async def test_save_writes_the_buffered_lines_atomically_and_says_where(tmp_path: Path):
    path = launcher_log(tmp_path, 50)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 50, "the tail")
        await pilot.press("ctrl+s")
        saved = await until(pilot, lambda: app.logs.last_saved, "the save")
        assert saved.parent == path.parent  # the cluster's logs directory
        assert saved.name.startswith("head-launcher-") and saved.suffix == ".txt"
        assert saved.read_text() == "".join(f"line {i}\n" for i in range(50))
        assert oct(saved.stat().st_mode & 0o777) == oct(0o644)
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
        assert notified(app, str(saved))

        await pilot.press("S")  # a second save gets its own file
        await until(pilot, lambda: app.logs.last_saved != saved, "the second save")
        assert app.logs.last_saved.read_text() == saved.read_text()


async def test_a_flood_stays_within_the_bound_and_is_marked_as_skipped(tmp_path: Path):
    path = launcher_log(tmp_path, 10)
    # Read twice a second: each 1 MB write below is more than the backlog allowed between
    # two reads, however the writer and the reader share the CPU (at 50 ms, CI's starved lane
    # once read every write in pieces smaller than that, and nothing was skipped).
    settings = FollowSettings(max_backlog=64 * 1024, poll_interval=0.5)
    app = make_app(path, max_lines=2000, settings=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 10, "the tail")
        total = 200_000
        most = 0

        def flood() -> None:
            with path.open("a") as f:
                for start in range(0, total, 20_000):
                    f.write(
                        "".join(
                            f"flood {i:06d} " + "y" * 40 + "\n"
                            for i in range(start, start + 20_000)
                        )
                    )
                    f.flush()

        writer = asyncio.get_running_loop().run_in_executor(None, flood)
        while not (writer.done() and view.lines()[-1].startswith(f"flood {total - 1:06d}")):
            most = max(most, view.line_count)
            await pilot.pause(0.02)
        await writer
        assert most <= 2000 and view.line_count <= 2000
        markers = [line for line in view.lines() if isinstance(line, Marker)]
        assert markers and all("lines skipped" in m for m in markers)
        # Every line was either received or counted as skipped.
        assert view.skipped_total > 0
        assert view.received_total + view.skipped_total == total + 10
        flood_lines = [line for line in view.lines() if line.startswith("flood")]
        # What is kept is the newest, in order, without duplicates.
        numbers = [int(line.split()[1]) for line in flood_lines]
        assert numbers == sorted(set(numbers)) and numbers[-1] == total - 1
        assert f"{view.skipped_total:,} skipped" in str(app.logs.status.render())


async def test_a_truncated_or_replaced_file_is_followed_again(tmp_path: Path):
    path = launcher_log(tmp_path, 20)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 20, "the tail")
        path.write_text("after truncation\n")
        await until(pilot, lambda: view.lines()[-1] == "after truncation", "the truncated file")
        assert any(isinstance(line, Marker) and "truncated" in line for line in view.lines())

        path.rename(path.with_suffix(".log.1"))  # rotation: a new file under the same name
        path.write_text("rotated 1\nrotated 2\n")
        await until(pilot, lambda: view.lines()[-1] == "rotated 2", "the new file")
        assert any(isinstance(line, Marker) and "replaced" in line for line in view.lines())


async def test_a_missing_launcher_log_is_waited_for(tmp_path: Path):
    path = tmp_path / "logs" / "worker-1.log"
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count, "the marker")
        assert "does not exist" in view.lines()[0]
        path.parent.mkdir()
        path.write_text("started\n")
        await until(pilot, lambda: view.lines()[-1] == "started", "the file's first line")


async def test_ray_logs_without_a_dashboard_say_why_and_keep_the_launcher_log(tmp_path: Path):
    path = launcher_log(tmp_path, 5)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 5, "the tail")
        await pilot.press("t")
        assert app.logs.source.kind == "launcher"
        assert "Ray logs unavailable" in app.logs.error
        assert "dashboard cannot be reached" in app.logs.error
        assert notified(app, "Ray logs unavailable")
        assert "Ray logs unavailable" in str(app.logs.status.render())
        append(path, ["still here"])
        await until(pilot, lambda: view.lines()[-1] == "still here", "the launcher log")


async def test_ray_logs_of_a_node_that_has_not_joined(tmp_path: Path):
    path = launcher_log(tmp_path, 5)
    client = RayClient("http://127.0.0.1:9")
    app = make_app(path, ray_client=client, ray_node_id=None)
    async with client, app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        assert "head is not a Ray node" in app.logs.error


async def test_ray_logs_with_an_unreachable_head(tmp_path: Path):
    path = launcher_log(tmp_path, 5)
    client = RayClient("http://127.0.0.1:9", timeout=2.0)  # nothing listens there
    app = make_app(path, ray_client=client, ray_node_id="ab" * 28)
    async with client, app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 5, "the tail")
        await pilot.press("t")
        await until(pilot, lambda: app.logs.error, "the error")
        assert "Cannot reach the Ray dashboard" in app.logs.error
        assert app.logs.source.kind == "launcher" and view.line_count == 5


def ray_copy(log: Path, node: str, name: str, lines: list[str], session: str) -> Path:
    """A copy of a Ray log as the node's launcher keeps it (logs/<node>/ray/<session>/)."""
    path = log.parent / node / "ray" / session / name
    path.parent.mkdir(parents=True, exist_ok=True)
    append(path, lines)
    return path


async def test_ray_logs_of_a_gone_node_come_from_its_copy_in_the_project(tmp_path: Path):
    path = launcher_log(tmp_path, 3)
    ray_copy(path, "head", "raylet.out", ["from an older run"], "session_2026-12-07_01-00-00_0_1")
    copy = ray_copy(
        path, "head", "raylet.out", ["raylet 1", "raylet 2"], "session_2026-12-07_02-00-00_0_2"
    )
    ray_copy(path, "head", "gcs_server.out", ["gcs 1"], "session_2026-12-07_02-00-00_0_2")
    nodes = path.parent.parent / "nodes"
    nodes.mkdir()
    (nodes / "head.json").write_text('{"node": "head", "role": "head", "updated_at": 1.8e9}')
    app = make_app(path)  # no dashboard: the node is not in Ray
    async with app.run_test(size=(120, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 3, "the launcher log")
        await pilot.press("t")
        await until(pilot, lambda: view.lines() == ["raylet 1", "raylet 2"], "the copy")
        source = app.logs.source
        assert source.kind == "ray" and source.copy and source.filename == "raylet.out"
        assert "(node gone since 2027-01-15 08:00:00 UTC)" in str(app.logs.title_bar.render())
        assert "Ray raylet.out (project copy) (node gone since" in str(app.logs.status.render())
        append(copy, ["raylet 3"])  # a last pass of the launcher: followed
        await until(pilot, lambda: view.lines()[-1] == "raylet 3", "the copy followed")

        await pilot.press("p")
        picker = await until(
            pilot, lambda: isinstance(app.screen, RayLogPicker) and app.screen, "the picker"
        )
        assert picker.files == ["gcs_server.out", "raylet.out"]
        picker.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        await until(pilot, lambda: view.lines() == ["gcs 1"], "the other copy")
        await pilot.press("t")  # back to the launcher log: the copy is no longer followed
        await until(pilot, lambda: view.line_count == 3, "the launcher log")
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "logs.ray-copy" and w.is_running],
            "the copy's follower to stop",
        )


async def test_ray_logs_from_a_head_that_does_not_answer_come_from_the_copy(tmp_path: Path):
    path = launcher_log(tmp_path, 5)
    ray_copy(path, "head", "raylet.out", ["copied"], "session_2026-12-07_02-00-00_0_2")
    client = RayClient("http://127.0.0.1:9", timeout=2.0)  # nothing listens there
    app = make_app(path, ray_client=client, ray_node_id="ab" * 28)
    async with client, app.run_test(size=(160, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 5, "the tail")
        await pilot.press("t")
        await until(pilot, lambda: view.lines() == ["copied"], "the copy")
        assert app.logs.source.copy and not app.logs.error
        assert "(Ray did not give it: Cannot reach the Ray dashboard" in app.logs.source.note


async def test_n_opens_a_gone_nodes_logs_and_its_ray_log_copy(tmp_path: Path):
    """worker-2 was scaled down: no row on the cluster screen, but its launcher log and its
    Ray log copies are in the project, and `n` reaches them from any node's logs."""
    path = launcher_log(tmp_path, 2)
    append(path.parent / "worker-1.log", ["worker-1 launcher"])
    append(path.parent / "worker-2.log", ["worker-2 launcher"])
    ray_copy(path, "worker-2", "raylet.out", ["worker-2 raylet"], "session_2026-12-07_02-00-00_0_2")
    (path.parent / "autoscaler.log").write_text("not a node\n")
    app = make_app(path, ray_nodes={"worker-1": "cd" * 28})
    async with app.run_test(size=(120, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 2, "the head's launcher log")
        assert app.logs.node_choices() == [
            "head (not in Ray)",
            "worker-1",
            "worker-2 (not in Ray)",
        ]
        await pilot.press("n")
        picker = await until(
            pilot, lambda: isinstance(app.screen, RayLogPicker) and app.screen, "the picker"
        )
        picker.query_one(OptionList).highlighted = 2
        await pilot.press("enter")
        await until(pilot, lambda: view.lines() == ["worker-2 launcher"], "worker-2's log")
        assert "c1 / worker-2" in str(app.logs.title_bar.render())
        await pilot.press("t")
        await until(pilot, lambda: view.lines() == ["worker-2 raylet"], "its Ray log's copy")
        assert "(node gone" in app.logs.source.note


async def test_all_nodes_merge_in_each_nodes_copy_of_a_ray_log(tmp_path: Path):
    path = launcher_log(tmp_path, 0)
    append(path, ["2026-12-07T02:00:01.000Z [launcher] head up"])
    append(path.parent / "worker-1.log", ["2026-12-07T02:00:03.000Z [launcher] worker-1 joined"])
    session = "session_2026-12-07_02-00-00_0_2"
    ray_copy(path, "worker-1", "raylet.out", ["[2026-12-07 02:00:02,000 I 1 1] raylet"], session)
    app = make_app(path, all_nodes=True)
    async with app.run_test(size=(120, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 2, "the launcher logs")
        await pilot.press("p")
        picker = await until(
            pilot, lambda: isinstance(app.screen, RayLogPicker) and app.screen, "the picker"
        )
        assert picker.files == ["(launcher logs only)", "raylet.out"]
        picker.query_one(OptionList).highlighted = 1
        await pilot.press("enter")
        await until(pilot, lambda: view.line_count == 3, "the copies merged in")
        assert [line.split(" | ")[0].strip() for line in view.lines()] == [
            "head",
            "worker-1/raylet.out",
            "worker-1",
        ]
        assert "all nodes' launcher logs + each node's raylet.out" in str(app.logs.status.render())


async def test_escape_goes_back(tmp_path: Path):
    path = launcher_log(tmp_path, 5)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.logs.view.line_count == 5, "the tail")
        assert app.screen is app.logs
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, LogsScreen)
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.node is app.logs and w.is_running],
            "the screen's workers to stop",
        )


SNAPSHOT_LINES = [
    "2025-01-01 10:00:00,000 INFO launcher: raycai launcher for head (cluster c1)",
    "2025-01-01 10:00:00,100 INFO launcher: phase starting-ray",
    "2025-01-01 10:00:01,250 INFO scripts.py:1 -- Local node IP: 127.0.0.2",
    "2025-01-01 10:00:05,500 ERROR dashboard: agent failed to bind 52365, retrying",
    "2025-01-01 10:00:06,000 INFO scripts.py:2 -- Ray runtime started.",
    "2025-01-01 10:00:06,010 WARNING node: object store is 30% of memory",
    "2025-01-01 10:00:07,000 ERROR raylet: worker 7 exited (code 1), restarting it",
    "2025-01-01 10:00:08,000 INFO launcher: phase running (published head.json)",
]


def test_snapshot_with_a_filter(tmp_path_factory: pytest.TempPathFactory, snap_compare):
    # A fixed path keeps the status line identical between runs; it shows no path anyway.
    path = launcher_log(tmp_path_factory.mktemp("snap"))
    append(path, SNAPSHOT_LINES)
    app = make_app(path)

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: app.logs.view.line_count == len(SNAPSHOT_LINES), "the tail")
        await pilot.press("slash", *"error", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 20), run_before=run_before)


# -- real Ray ---------------------------------------------------------------------------------


@pytest.fixture
def ray_head(private_netns: None) -> Iterator[tuple[object, str]]:
    """A real Ray head with token auth: (cluster, node id)."""
    from tests.fixtures.ray_nodes import RayTestCluster

    root = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))  # short: Ray's socket paths
    cluster = RayTestCluster(root)
    try:
        head = cluster.start_head("127.0.0.2", "head")
        cluster.wait_gcs()
        ids = cluster.wait_alive(head)
        yield cluster, ids["head"]
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.ray
async def test_follows_raylet_out_through_the_real_dashboard(tmp_path: Path, ray_head):
    cluster, node_id = ray_head
    path = launcher_log(tmp_path, 3)
    client = RayClient(cluster.dashboard_url, token=Secret(cluster.token))
    settings = FollowSettings(ray_interval=0.2)
    app = make_app(path, ray_client=client, ray_node_id=node_id, settings=settings)
    async with client, app.run_test(size=(120, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 3, "the launcher tail")
        await pilot.press("t")
        await until(pilot, lambda: app.logs.source.kind == "ray", "the Ray source", 30)
        assert app.logs.source.filename == "raylet.out" and not app.logs.error
        await until(pilot, lambda: view.line_count > 5, "raylet.out's tail", 30)
        assert not any(line.startswith("line ") for line in view.lines())

        raylet_out = cluster.nodes[0].logs_dir / "raylet.out"
        with raylet_out.open("a") as f:
            f.write(f"raycai logs screen test {os.getpid()}\n")
        await until(
            pilot,
            lambda: any(line == f"raycai logs screen test {os.getpid()}" for line in view.lines()),
            "the appended line",
            30,
        )
        assert "Ray raylet.out" in str(app.logs.status.render())

        # p: choose another of the node's files.
        (cluster.nodes[0].logs_dir / "raycai-picked.log").write_text("picked 1\npicked 2\n")
        await pilot.press("p")
        picker = await until(
            pilot, lambda: isinstance(app.screen, RayLogPicker) and app.screen, "the picker", 30
        )
        assert {"raylet.out", "raycai-picked.log"} <= set(picker.files)
        picker.query_one(OptionList).highlighted = picker.files.index("raycai-picked.log")
        await pilot.press("enter")
        await until(pilot, lambda: view.lines()[-2:] == ["picked 1", "picked 2"], "picked", 30)
        assert app.logs.source.filename == "raycai-picked.log" and app.screen is app.logs

        await pilot.press("t")  # back to the launcher log
        await until(pilot, lambda: view.lines() == ["line 0", "line 1", "line 2"], "launcher")
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "logs.ray" and w.is_running],
            "the Ray stream to stop",
        )

        # The head goes away while its log is followed: the view says why and keeps its lines.
        await pilot.press("t")
        await until(pilot, lambda: "picked 2" in view.lines(), "the Ray log again", 30)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, cluster.stop_node, cluster.nodes[0])
        await until(pilot, lambda: app.logs.error, "the lost stream to be reported", 60)
        assert "raycai-picked.log" in app.logs.error and "picked 2" in view.lines()
        assert isinstance(view.lines()[-1], Marker) and "stopped" in view.lines()[-1]
        await pilot.press("t")
        await until(pilot, lambda: view.lines() == ["line 0", "line 1", "line 2"], "launcher")
        assert not app.logs.error
        await pilot.press("t")  # the head is gone: listing its logs fails, and says why
        await until(pilot, lambda: app.logs.error, "the listing error", 30)
        assert "Cannot reach the Ray dashboard" in app.logs.error
        assert app.logs.source.kind == "launcher"
