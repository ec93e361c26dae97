"""SVG snapshot of the logs screen showing every node's launcher log merged by time.

Update after an intended change with:
./dev test tests/tui/test_logs_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest
from textual.app import App
from textual.pilot import Pilot

from raycai_tui.screens.logs import LogsScreen
from tests.tui.support import until

NODE_LINES = {
    "head": [
        "2025-01-01T10:00:00.000Z [launcher] raycai launcher for head (cluster demo)",
        "2025-01-01T10:00:01.250Z [ray] Local node IP: 127.0.0.2",
        "2025-01-01T10:00:06.000Z [ray] Ray runtime started.",
        "2025-01-01T10:00:06.100Z [launcher] phase running (published head.json)",
        "2025-01-01T10:00:12.000Z [launcher] worker-2: token refused, see its log",
    ],
    "worker-1": [
        "2025-01-01T10:00:02.000Z [launcher] phase waiting-for-head",
        "2025-01-01T10:00:06.500Z [launcher] phase starting-ray",
        "2025-01-01T10:00:09.000Z [ray] Ray runtime started.",
        "2025-01-01T10:00:09.100Z [launcher] phase joined",
    ],
    "worker-2": [
        "2025-01-01T10:00:03.000Z [launcher] phase waiting-for-head",
        "2025-01-01T10:00:07.000Z [launcher] phase starting-ray",
        "2025-01-01T10:00:11.000Z [ray] InvalidAuthToken: the head refused this token",
        "2025-01-01T10:00:11.050Z [launcher] phase failed (exit 3)",
    ],
}


class LogsApp(App[None]):
    def __init__(self, screen: LogsScreen) -> None:
        super().__init__()
        self.logs = screen

    def on_mount(self) -> None:
        self.push_screen(self.logs)


def test_all_nodes_merged(tmp_path_factory: pytest.TempPathFactory, snap_compare) -> None:
    logs = tmp_path_factory.mktemp("snap") / "logs"
    logs.mkdir()
    for node, lines in NODE_LINES.items():
        (logs / f"{node}.log").write_text("".join(f"{line}\n" for line in lines))
    screen = LogsScreen(
        cluster="demo",
        node="head",
        launcher_log=logs / "head.log",
        ray_client=None,
        ray_node_id=None,
    )
    app = LogsApp(screen)
    total = sum(map(len, NODE_LINES.values()))

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: screen.view.line_count == 5, "the head's log")
        await pilot.press("a")
        await until(pilot, lambda: screen.view.line_count == total, "every node's log")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(110, 20), run_before=run_before)
