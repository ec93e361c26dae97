"""The one log pane (raycai_tui/widgets/log_pane.py), driven with Pilot: follow, wrap, filter,
matching-only, save and merged-node prefixes; and the node logs screen and a job's logs have
the same keys (the pane's bindings, one set of ids for the user keymap)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult

from raycai_tui.screens.jobs import JobLogsScreen
from raycai_tui.screens.logs import LogsScreen
from raycai_tui.widgets.log_pane import LogPane
from raycai_tui.widgets.log_view import Prefixed, prefixed
from tests.tui.support import until

PANE_KEYS = {
    "logs.follow": "f",
    "logs.wrap": "w",
    "logs.filter": "slash",
    "logs.matching": "m",
    "logs.save": "ctrl+s,S",
}


class PaneApp(App[None]):
    def __init__(self, save_dir: Path) -> None:
        super().__init__()
        self.saved_to = save_dir / "saved.txt"
        self.pane = LogPane(save_path=lambda: self.saved_to, label="a source")

    def compose(self) -> ComposeResult:
        yield self.pane

    def on_mount(self) -> None:
        self.pane.view.focus()


def status(pane: LogPane) -> str:
    return str(pane.status.render())


async def test_the_pane_keys_follow_wrap_filter_matching_and_save(tmp_path: Path) -> None:
    app = PaneApp(tmp_path)
    async with app.run_test(size=(60, 12)) as pilot:
        pane = app.pane
        pane.append([f"line {i} {'ERROR' if i % 10 == 0 else 'ok'}" for i in range(100)])
        await pilot.pause()
        assert "a source · 100/20,000 lines · follow on · wrap off" in status(pane)
        assert pane.view.scroll_y == pane.view.max_scroll_y

        await pilot.press("f", "w")
        assert not pane.view.follow and pane.view.wrap
        assert "follow off (paused) · wrap on" in status(pane)

        assert app.screen.check_action("toggle_matching", ()) is True  # the screen asks nothing
        assert pane.check_action("toggle_matching", ()) is None  # dimmed: no filter yet
        await pilot.press("slash", *"error", "enter")
        assert pane.view.match_count == 10 and pane.view.has_focus
        await pilot.press("m")
        assert pane.view.displayed_count == 10
        assert "filter 'error': 10 matches, only these" in status(pane)

        await pilot.press("slash", "escape")  # esc in the field clears the filter
        assert pane.view.filter_text == "" and pane.view.displayed_count == 100

        await pilot.press("S")
        await until(pilot, lambda: pane.last_saved, "the save")
        assert app.saved_to.read_text().splitlines() == pane.view.lines()

        pane.report("something went wrong", notify=False)
        assert "something went wrong" in status(pane)


async def test_merged_lines_show_their_node_in_its_color(tmp_path: Path) -> None:
    app = PaneApp(tmp_path)
    async with app.run_test(size=(60, 8)) as pilot:
        pane = app.pane
        pane.append([prefixed("head     | up", 8, 0), prefixed("worker-1 | joined", 8, 1)])
        await pilot.pause()
        lines = pane.view.lines()
        assert all(isinstance(line, Prefixed) for line in lines)
        first, second = (pane.view.render_line(y) for y in range(2))
        assert first.text.startswith("head     | up")
        head_style = next(iter(first)).style
        worker_style = next(iter(second)).style
        assert head_style is not None and worker_style is not None
        assert head_style.color != worker_style.color


def test_both_log_screens_have_the_same_keys_from_the_pane() -> None:
    """The keys live on the pane: neither screen binds them again (a user keymap entry
    `logs.wrap = "W"` changes both)."""
    pane = {b.id: b.key for b in LogPane.BINDINGS if b.id in PANE_KEYS}
    assert pane == PANE_KEYS
    for screen in (LogsScreen, JobLogsScreen):
        own = {b.id for b in screen.BINDINGS}  # type: ignore[union-attr]
        keys = {b.key for b in screen.BINDINGS}  # type: ignore[union-attr]
        assert not own & set(PANE_KEYS), screen
        assert not keys & {"f", "w", "slash", "m", "ctrl+s,S", "ctrl+s"}, screen
