"""What the Ray dashboard says: nodes alive/dead, resources used of total, recent history."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from raycai_tui.format import GIB, clock, one_line, used_of

if TYPE_CHECKING:
    from raycai_core.cluster.view import ClusterView

HISTORY = 90  # samples (three minutes at the default 2 s poll)


class RayPanel(Vertical):
    """Shows the last Ray poll's numbers; `record` adds a sample to the sparklines."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Ray"
        self.nodes_alive = 0
        self.nodes_dead = 0
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._alive: deque[float] = deque(maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Static(Text("waiting for the first Ray poll", style="dim"), id="ray-summary")
        with Horizontal(classes="history"):
            yield Label("CPU used", classes="history-label")
            yield Sparkline([], id="cpu-history")
        with Horizontal(classes="history"):
            yield Label("nodes alive", classes="history-label")
            yield Sparkline([], id="alive-history")

    @property
    def summary_text(self) -> str:
        return str(self.query_one("#ray-summary", Static).render())

    def record(self, view: ClusterView) -> None:
        """A new Ray sample (after a dashboard poll, not after an app-list refresh)."""
        if view.ray_error is None:
            self.add_sample(view.totals.cpu[0] if view.totals else 0.0, view.nodes_alive)

    def add_sample(self, cpu_used: float, nodes_alive: int) -> None:
        self._cpu.append(cpu_used)
        self._alive.append(float(nodes_alive))
        self.query_one("#cpu-history", Sparkline).data = list(self._cpu)
        self.query_one("#alive-history", Sparkline).data = list(self._alive)

    def show(self, view: ClusterView, failing_since: float | None = None) -> None:
        expected = view.desired_workers + 1
        text = Text()
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
        self.query_one("#ray-summary", Static).update(text)
