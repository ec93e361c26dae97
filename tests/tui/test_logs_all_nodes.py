"""Logs screen, all nodes: every launcher log merged by time, one color per node, and the
filter, matches-only, wrap and save across nodes (real files, real workers, Pilot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from rich.style import Style
from textual.app import App

from raycai_core.ray.client import RayClient
from raycai_tui.screens.log_sources import FollowSettings
from raycai_tui.screens.logs import LogsScreen
from raycai_tui.widgets.log_view import LogView, Marker, Prefixed
from tests.tui.support import until

SETTINGS = FollowSettings(rescan_interval=0.05)


def stamp(second: int) -> str:
    return f"2025-01-01T10:00:{second:02d}.000Z"


class LogsApp(App[None]):
    def __init__(self, screen: LogsScreen) -> None:
        super().__init__()
        self.logs = screen

    def on_mount(self) -> None:
        self.push_screen(self.logs)


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))


def cluster_logs(root: Path) -> Path:
    """Three nodes' launcher logs whose lines interleave in time."""
    logs = root / ".raycai" / "clusters" / "c1" / "logs"
    write(logs / "head.log", [f"{stamp(0)} [launcher] head starting", f"{stamp(3)} [ray] ERROR h"])
    write(logs / "worker-1.log", [f"{stamp(1)} [launcher] w1 starting", f"{stamp(4)} [ray] w1 ok"])
    write(logs / "worker-2.log", [f"{stamp(2)} [launcher] ERROR w2 refused", f"{stamp(5)} w2 ok"])
    return logs


MERGED = [
    f"head     | {stamp(0)} [launcher] head starting",
    f"worker-1 | {stamp(1)} [launcher] w1 starting",
    f"worker-2 | {stamp(2)} [launcher] ERROR w2 refused",
    f"head     | {stamp(3)} [ray] ERROR h",
    f"worker-1 | {stamp(4)} [ray] w1 ok",
    f"worker-2 | {stamp(5)} w2 ok",
]


def make_app(logs: Path, node: str = "worker-1", **kwargs) -> LogsApp:
    kwargs.setdefault("settings", SETTINGS)
    kwargs.setdefault("ray_client", None)
    kwargs.setdefault("ray_node_id", None)
    screen = LogsScreen(cluster="c1", node=node, launcher_log=logs / f"{node}.log", **kwargs)
    return LogsApp(screen)


def title(app: LogsApp) -> str:
    return str(app.logs.title_bar.render())


def styles_of(view: LogView, text: str) -> list[Style]:
    """Styles of the rendered segments whose text is `text`, over the visible rows."""
    return [
        segment.style
        for y in range(view.scrollable_content_region.height)
        for segment in view.render_line(y)
        if segment.text == text and segment.style is not None
    ]


async def test_a_switches_between_this_node_and_all_nodes_merged_by_time(tmp_path: Path):
    logs = cluster_logs(tmp_path)
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count == 2, "worker-1's own log")
        assert title(app) == "Logs · c1 / worker-1"
        await pilot.press("a")
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        assert app.logs.source.kind == "all" and title(app) == "Logs · c1 / all nodes"
        assert "all nodes' launcher logs" in str(app.logs.status.render())
        assert all(isinstance(line, Prefixed) for line in view.lines())
        assert any(binding.id == "logs.all" for binding in app.logs.BINDINGS)  # type: ignore[union-attr]

        # New lines of any node, and a node that appears (a worker added), follow in order.
        write(logs / "worker-2.log", [f"{stamp(6)} w2 busy"])
        await until(pilot, lambda: view.lines()[-1].endswith("w2 busy"), "worker-2's new line")
        write(logs / "worker-3.log", [f"{stamp(7)} [launcher] w3 starting"])
        await until(pilot, lambda: view.lines()[-1].endswith("w3 starting"), "worker-3's log")
        assert view.lines()[-1] == f"worker-3 | {stamp(7)} [launcher] w3 starting"
        assert any(
            isinstance(line, Marker) and "worker-3.log appeared" in line for line in view.lines()
        )
        await pilot.pause()
        assert view.visible_lines()[-1].endswith("w3 starting")  # follow is on

        await pilot.press("a")  # back to this node's launcher log
        await until(pilot, lambda: len(view.lines()) == 2, "worker-1's own log again")
        assert view.lines() == [f"{stamp(1)} [launcher] w1 starting", f"{stamp(4)} [ray] w1 ok"]
        assert app.logs.source.kind == "launcher" and title(app) == "Logs · c1 / worker-1"
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "logs.all" and w.is_running],
            "the merged follow to stop",
        )


async def test_each_node_name_has_its_own_color(tmp_path: Path):
    logs = cluster_logs(tmp_path)
    app = make_app(logs, all_nodes=True)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        await pilot.pause()
        plain = styles_of(view, f"     | {stamp(0)} [launcher] head starting")
        head = styles_of(view, "head")
        worker_1 = styles_of(view, "worker-1")
        worker_2 = styles_of(view, "worker-2")
        assert len(head) == len(worker_1) == len(worker_2) == 2
        # One color per node, the same on each of its lines, none the text's own.
        colors = {head[0].color, worker_1[0].color, worker_2[0].color, plain[0].color}
        assert len(colors) == 4
        assert head[0] == head[1] and worker_1[0] == worker_1[1] and worker_2[0] == worker_2[1]

        # Wrapped, the name keeps its color on the line's first row only.
        write(logs / "head.log", [f"{stamp(9)} " + "z" * 150])
        await until(pilot, lambda: view.lines()[-1].endswith("z"), "the long line")
        await pilot.press("w")
        await pilot.pause()
        rows = [view.render_line(y) for y in range(view.scrollable_content_region.height)]
        long_rows = [row for row in rows if "zzz" in row.text]
        assert len(long_rows) == 2 and long_rows[0].text.startswith("head     |")
        assert [s.style for s in long_rows[0] if s.text == "head"] == [head[0]]
        assert all(s.style != head[0] for s in long_rows[1])


async def test_the_filter_and_matches_only_apply_across_nodes(tmp_path: Path):
    logs = cluster_logs(tmp_path)
    app = make_app(logs, all_nodes=True)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        await pilot.press("slash", *"ERROR", "enter", "m")
        assert view.match_count == 2 and view.only_matching
        await pilot.pause()
        assert view.visible_lines() == [MERGED[2], MERGED[3]]  # worker-2's and head's
        write(logs / "worker-1.log", [f"{stamp(8)} ERROR w1 lost the head"])
        await until(pilot, lambda: view.match_count == 3, "worker-1's new match")
        await pilot.pause()
        assert view.visible_lines()[-1] == f"worker-1 | {stamp(8)} ERROR w1 lost the head"
        assert len(styles_of(view, "ERROR")) == 3  # highlighted after the node name

        # The node name is part of the line: filtering by it shows one node.
        await pilot.press("slash", "ctrl+u", *"worker-2", "enter")
        await pilot.pause()
        assert view.visible_lines() == [MERGED[2], MERGED[5]]
        assert "filter 'worker-2': 2 matches, only these" in str(app.logs.status.render())


async def test_save_writes_the_merged_lines_with_their_nodes(tmp_path: Path):
    logs = cluster_logs(tmp_path)
    app = make_app(logs, all_nodes=True)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        await pilot.press("ctrl+s")
        saved = await until(pilot, lambda: app.logs.last_saved, "the save")
        assert saved.parent == logs and saved.name.startswith("all-nodes-")
        assert saved.read_text() == "".join(f"{line}\n" for line in MERGED)
        # A saved file is not a launcher log: the merged view does not pick it up.
        write(logs / "head.log", [f"{stamp(9)} head later"])
        await until(pilot, lambda: view.lines()[-1].endswith("head later"), "the next line")
        assert not [line for line in view.lines() if isinstance(line, Marker)]


async def test_no_logs_yet_is_said_and_the_first_log_is_waited_for(tmp_path: Path):
    logs = tmp_path / ".raycai" / "clusters" / "c1" / "logs"
    app = make_app(logs, node="head", all_nodes=True)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.line_count, "the marker")
        assert "no launcher logs" in view.lines()[0]
        write(logs / "head.log", [f"{stamp(0)} [launcher] head starting"])
        await until(pilot, lambda: view.lines()[-1].startswith("head | "), "the head's log")


async def test_a_flood_on_one_node_stays_within_the_bound(tmp_path: Path):
    logs = cluster_logs(tmp_path)
    settings = FollowSettings(max_backlog=64 * 1024, rescan_interval=0.05)
    app = make_app(logs, all_nodes=True, max_lines=2000, settings=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        total = 100_000

        def flood() -> None:
            with (logs / "worker-1.log").open("a") as f:
                for start in range(0, total, 20_000):
                    f.write(
                        "".join(
                            f"{stamp(10)} flood {i:06d}\n" for i in range(start, start + 20_000)
                        )
                    )
                    f.flush()

        most = 0
        writer = asyncio.get_running_loop().run_in_executor(None, flood)
        while not (writer.done() and view.lines()[-1].endswith(f"flood {total - 1:06d}")):
            most = max(most, view.line_count)
            await pilot.pause(0.02)
        await writer
        assert most <= 2000 and view.line_count <= 2000
        assert view.received_total + view.skipped_total == len(MERGED) + total
        numbers = [int(line.split()[-1]) for line in view.lines() if "flood" in line]
        assert numbers == sorted(set(numbers)) and numbers[-1] == total - 1
        # Each write is 20,000 lines (about 900 KB), far more than the 64 KB backlog allowed.
        assert view.skipped_total > 0
        assert any("lines of worker-1 skipped" in line for line in view.lines())


@pytest.fixture
async def stand_in_dashboard() -> AsyncIterator[str]:
    """Answers a node's log listing and streams two lines of raylet.out, then stays open."""

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(
            {"result": True, "msg": "", "data": {"result": {"raylet": ["raylet.out"]}}}
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"raylet line 1\nraylet line 2\n")
        await asyncio.Event().wait()  # until the client goes away
        return response

    app = web.Application()
    app.router.add_get("/api/v0/logs", listing)
    app.router.add_get("/api/v0/logs/stream", stream)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_t_goes_from_all_nodes_to_the_ray_log_and_back(tmp_path: Path, stand_in_dashboard):
    logs = cluster_logs(tmp_path)
    client = RayClient(stand_in_dashboard)
    app = make_app(logs, all_nodes=True, ray_client=client, ray_node_id="ab" * 28)
    async with client, app.run_test(size=(100, 30)) as pilot:
        view = app.logs.view
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs")
        await pilot.press("t")
        await until(pilot, lambda: view.lines() == ["raylet line 1", "raylet line 2"], "Ray log")
        assert app.logs.source.kind == "ray" and title(app) == "Logs · c1 / worker-1"
        await pilot.press("t")  # back to where it came from: all nodes, not worker-1's log
        await until(pilot, lambda: view.lines() == MERGED, "the merged logs again")
        assert app.logs.source.kind == "all" and title(app) == "Logs · c1 / all nodes"
        await pilot.press("a", "t", "t")  # from worker-1's own log, t comes back to it
        await until(pilot, lambda: len(view.lines()) == 2 and "w1 ok" in view.lines()[-1], "w1")
        assert app.logs.source.kind == "launcher"
