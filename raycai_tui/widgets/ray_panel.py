"""What the Ray dashboard says: nodes alive/dead, resources used of total, recent history."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from raycai_tui.format import GIB, clock, one_line, used_of
from raycai_tui.widgets.text_line import show_text

if TYPE_CHECKING:
    from raycai_core.cluster.view import ClusterView

HISTORY = 90  # samples (three minutes at the default 2 s poll)


def add_to_history(sparkline: Sparkline, history: deque[float], sample: float) -> None:
    """Append a sample; repaint only if the line changes. A line of two or more equal values
    is drawn the same whatever their number, so a steady value (an idle cluster) costs no
    repaint: the data is kept up to date without refreshing the widget."""
    flat = len(history) >= 2 and min(history) == max(history) == sample
    history.append(float(sample))
    if flat:
        sparkline.set_reactive(Sparkline.data, list(history))
    else:
        sparkline.data = list(history)


class RayPanel(Vertical):
    """Shows the last Ray poll's numbers; `record` adds a sample to the sparklines.

    The panel composes its children in its own message pump, which may run after its
    screen's on_mount has shown a view (seen in CI on a loaded machine): what is shown or
    recorded before then is kept, and drawn when the panel mounts."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Ray"
        self.nodes_alive = 0
        self.nodes_dead = 0
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._alive: deque[float] = deque(maxlen=HISTORY)
        self._mounted = False  # its children composed (they are before on_mount)
        self._early: tuple[ClusterView, float | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("waiting for the first Ray poll", style="dim"), id="ray-summary")
        with Horizontal(classes="history"):
            yield Label("CPU used", classes="history-label")
            yield Sparkline([], id="cpu-history")
        with Horizontal(classes="history"):
            yield Label("nodes alive", classes="history-label")
            yield Sparkline([], id="alive-history")

    def on_mount(self) -> None:
        self._mounted = True
        if self._cpu:
            self.query_one("#cpu-history", Sparkline).data = list(self._cpu)
            self.query_one("#alive-history", Sparkline).data = list(self._alive)
        if self._early is not None:
            view, failing_since = self._early
            self._early = None
            self.show(view, failing_since)

    @property
    def summary_text(self) -> str:
        return str(self.query_one("#ray-summary", Static).render())

    def record(self, view: ClusterView) -> None:
        """A new Ray sample (after a dashboard poll, not after an app-list refresh)."""
        if view.ray_error is None:
            self.add_sample(view.totals.cpu[0] if view.totals else 0.0, view.nodes_alive)

    def add_sample(self, cpu_used: float, nodes_alive: int) -> None:
        if not self._mounted:
            self._cpu.append(float(cpu_used))
            self._alive.append(float(nodes_alive))
            return
        add_to_history(self.query_one("#cpu-history", Sparkline), self._cpu, cpu_used)
        add_to_history(self.query_one("#alive-history", Sparkline), self._alive, nodes_alive)

    def show(self, view: ClusterView, failing_since: float | None = None) -> None:
        if not self._mounted:
            self._early = (view, failing_since)
            return
        # An autoscaled cluster has a floor, not a count: more nodes than that is no fault.
        expected = (
            f"at least {view.desired_workers + 1}"
            if view.autoscaled
            else f"{view.desired_workers + 1}"
        )
        text = Text()
        if view.desired is not None and view.desired.state == "suspended":
            text.append("Ray is not running: the cluster is suspended", style="blue")
            text.append(f" ({expected} node(s) when resumed: z)", style="dim")
            show_text(self.query_one("#ray-summary", Static), text)
            return
        if view.ray_not_answering:
            text.append("nodes unknown while Ray does not answer", style="yellow")
            text.append(f" (last seen: {self.nodes_alive} alive; {expected} wanted)", style="dim")
        else:
            self.nodes_alive = view.nodes_alive
            self.nodes_dead = view.nodes_dead
            text.append("nodes ")
            text.append(f"{view.nodes_alive} alive", style="bold green" if view.nodes_alive else "")
            text.append(" · ")
            text.append(f"{view.nodes_dead} dead", style="red" if view.nodes_dead else "dim")
            text.append(f" (of {expected} wanted)", style="dim")
        totals = view.totals
        if totals is not None:
            text.append(f"\nused of total: CPU {used_of(totals.cpu)}")
            text.append(f"   GPU {used_of(totals.gpu)}")
            text.append(f"   memory {used_of(totals.memory, GIB)} GB")
        if view.head is not None:
            version = f", Ray {view.head.ray_version}" if view.head.ray_version else ""
            text.append(f"\nhead {view.head.gcs_address}{version}", style="dim")
        if view.ray_error:
            text.append("\n")
            since = f" since {clock(failing_since)}" if failing_since else ""
            text.append(f"Ray dashboard not answering{since}: ", style="bold red")
            text.append(one_line(view.ray_error, 200), style="red")
        show_text(self.query_one("#ray-summary", Static), text)
