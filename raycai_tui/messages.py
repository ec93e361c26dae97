"""Messages the app's workers post, forwarded by the app to the screens that listen.

None of them bubbles: the app posts a fresh copy to each screen, and a screen's message
must not come back up to the app.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from textual.message import Message

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import Progress
    from raycai_core.cluster.view import ClusterView
    from raycai_tui.backoff import Backoff
    from raycai_tui.operations import Operation
    from raycai_tui.services import Snapshot

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    """Something that happened to a cluster, for its events list."""

    at: float
    cluster: str
    text: str
    level: Level = "info"


class EventStore:
    """The last events of each cluster, kept while the app runs (screens come and go)."""

    def __init__(self, per_cluster: int = 200) -> None:
        self._events: dict[str, deque[Event]] = {}
        self._per_cluster = per_cluster

    def add(self, event: Event) -> None:
        self._events.setdefault(event.cluster, deque(maxlen=self._per_cluster)).append(event)

    def of(self, cluster: str) -> list[Event]:
        return list(self._events.get(cluster, ()))


class Connected(Message, bubble=False):
    """The services are ready: the header can say where the app is connected."""

    def __init__(self, workspace: str, project: str) -> None:
        super().__init__()
        self.workspace = workspace
        self.project = project


class ConnectFailed(Message, bubble=False):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ClustersPolled(Message, bubble=False):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class PollStatus(Message, bubble=False):
    """The app poller's state changed (success, failure, backoff)."""

    def __init__(self, backoff: Backoff) -> None:
        super().__init__()
        self.backoff = backoff


class ClusterEvent(Message, bubble=False):
    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class HealingToggled(Message, bubble=False):
    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled


class OperationChanged(Message, bubble=False):
    """An operation of the app started, moved on (`progress`), or ended (`operation.ended`)."""

    def __init__(self, operation: Operation, progress: Progress | None = None) -> None:
        super().__init__()
        self.operation = operation
        self.progress = progress


class ReadinessChanged(Message, bubble=False):
    """A tick of the app's watch of a new cluster (`view.ready`: the last one)."""

    def __init__(self, name: str, view: ClusterView, line: str) -> None:
        super().__init__()
        self.name = name
        self.view = view
        self.line = line  # readiness.progress_line(view)
