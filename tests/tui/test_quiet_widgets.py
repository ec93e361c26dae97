"""The widgets that keep an idle dashboard cheap (P11): the footer is rebuilt only when its
keys change, a Static is updated only when its text changes (and laid out again only when
its size may change), a steady sparkline sample costs no repaint."""

from __future__ import annotations

from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.widgets import Sparkline, Static
from textual.widgets._footer import FooterKey

from raycai_tui.widgets.footer import KeyFooter
from raycai_tui.widgets.ray_panel import add_to_history
from raycai_tui.widgets.text_line import show_text, size_depends_on_content


class Keys(App[None]):
    CSS = "#fixed { height: 3; } #line { width: 40; }"
    BINDINGS = [Binding("g", "go", "Go"), Binding("x", "other", "Other")]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    def compose(self) -> ComposeResult:
        yield Static("", id="line")
        yield Static("", id="fixed")
        yield Sparkline([], id="history")
        yield KeyFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "go" and not self.ready else True

    def action_go(self) -> None:
        pass

    def action_other(self) -> None:
        pass


def go_key(app: Keys) -> FooterKey:
    return next(key for key in app.query(FooterKey) if key.action == "go")


async def test_the_footer_is_rebuilt_only_when_its_keys_change() -> None:
    app = Keys()
    async with app.run_test() as pilot:
        await pilot.pause()
        first = go_key(app)
        assert first.has_class("-disabled")
        for _ in range(3):  # as a screen does on every poll
            app.screen.refresh_bindings()
            await pilot.pause()
        assert go_key(app) is first  # the same widget: nothing was recomposed

        app.ready = True
        app.screen.refresh_bindings()
        await pilot.pause()
        assert go_key(app) is not first
        assert not go_key(app).has_class("-disabled")


async def test_show_text_updates_only_on_a_change_of_text_or_style() -> None:
    app = Keys()
    async with app.run_test() as pilot:
        line = app.query_one("#line", Static)
        shown = Text("updated 10:00:00", style="dim")
        show_text(line, shown)
        await pilot.pause()
        show_text(line, Text("updated 10:00:00", style="dim"))
        assert line.content is shown  # equal text: not even re-set
        show_text(line, Text("updated 10:00:00", style="bold"))
        assert line.content is not shown and line.content.style == "bold"
        show_text(line, Text("updated 10:00:02", style="bold"))
        assert str(line.render()) == "updated 10:00:02"


async def test_a_layout_only_when_the_size_may_change() -> None:
    app = Keys()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        line = app.query_one("#line", Static)  # 40 wide, height auto
        fixed = app.query_one("#fixed", Static)  # height 3
        short, other = Text("updated 10:00:00"), Text("stale since 10:00:02")
        assert not size_depends_on_content(line, short, other)  # one line before and after
        assert size_depends_on_content(line, short, Text("x" * 60))  # wraps to two lines
        assert size_depends_on_content(line, short, Text("a\nb"))
        assert size_depends_on_content(line, "", short)  # not shown as Text before
        assert not size_depends_on_content(fixed, short, Text("a\nb\nc"))  # fixed height


def segments(data: list[float], width: int = 20) -> list[Segment]:
    console = Console(width=width, color_system="truecolor")
    return list(console.render(SparklineRenderable(data, width=width)))


def test_a_steady_sparkline_looks_the_same_whatever_its_length() -> None:
    """What `add_to_history` relies on to skip the repaint of a steady sample."""
    assert segments([3.0, 3.0]) == segments([3.0] * 50) == segments([3.0] * 90)
    assert segments([3.0, 3.0]) != segments([3.0, 3.0, 4.0])


async def test_steady_samples_keep_the_sparkline_data_current() -> None:
    from collections import deque

    app = Keys()
    async with app.run_test() as pilot:
        sparkline = app.query_one("#history", Sparkline)
        history: deque[float] = deque(maxlen=4)
        for sample in (2, 2, 2, 2, 2, 5):
            add_to_history(sparkline, history, sample)
            await pilot.pause()
            assert sparkline.data == list(history)
        assert sparkline.data == [2.0, 2.0, 2.0, 5.0]


async def test_the_ray_panel_keeps_what_it_was_shown_before_it_mounted() -> None:
    """A screen's on_mount can show a view before the panel composed its children (CI, under
    load: NoMatches '#ray-summary'); the view and samples are drawn when it mounts."""
    from raycai_tui.widgets.ray_panel import RayPanel
    from tests.tui.fixed_data import demo_view

    panel = RayPanel(id="ray")
    panel.add_sample(1.0, 2)
    panel.add_sample(3.0, 3)
    panel.show(demo_view())

    class Holder(App[None]):
        def compose(self) -> ComposeResult:
            yield panel

    async with Holder().run_test(size=(120, 20)) as pilot:
        await pilot.pause()
        assert "2 alive" in panel.summary_text
        assert panel.query_one("#cpu-history", Sparkline).data == [1.0, 3.0]
        assert panel.query_one("#alive-history", Sparkline).data == [2.0, 3.0]
