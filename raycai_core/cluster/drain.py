"""Draining a worker through Ray before its application is deleted.

raycai_core never imports Ray and may run where Ray is not installed, so the request goes
through the project directory: the lifecycle writes `drain/<node>.json` (atomically); that
worker's launcher sees it, runs `ray drain-node` (reason PREEMPTION, with the deadline) with
its own Ray and token against its own Ray node, so that Ray schedules nothing new there and
lets the running tasks finish; the raylet exits by itself once idle. The launcher then stops
Ray and records phase `drained` (its `detail` says whether the tasks finished or the deadline
passed) and waits to be deleted. A request whose `ray_node_id` is not the launcher's current
Ray node is stale and ignored; removing the request makes a drained launcher rejoin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from raycai_core.atomic import atomic_write_json, read_json
from raycai_core.cluster import phases
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import NodeRecord

# The launcher needs this long beyond the deadline: `ray drain-node` itself (it imports Ray,
# a few seconds on a busy node), then stopping Ray.
DRAIN_SLACK_S = 30.0
DRAIN_SCHEMA = 1

DrainEnd = Literal["drained", "gone"]


@dataclass(frozen=True)
class DrainRequest:
    node: str
    ray_node_id: str  # hex; the launcher ignores a request for another Ray node
    deadline_s: float  # grace for running tasks, from requested_at
    requested_at: float
    message: str = "raycai scale-down"

    def to_json(self) -> dict[str, object]:
        return {
            "schema": DRAIN_SCHEMA,
            "node": self.node,
            "ray_node_id": self.ray_node_id,
            "deadline_s": self.deadline_s,
            "requested_at": self.requested_at,
            "message": self.message,
        }


def request_drain(
    paths: ClusterPaths, node: str, ray_node_id: str, deadline_s: float, message: str
) -> DrainRequest:
    request = DrainRequest(node, ray_node_id, float(deadline_s), time.time(), message)
    paths.drain_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(paths.drain_request(node), request.to_json())
    return request


def read_drain_request(paths: ClusterPaths, node: str) -> DrainRequest | None:
    data = read_json(paths.drain_request(node))
    if not isinstance(data, dict):
        return None
    try:
        return DrainRequest(
            node=str(data["node"]),
            ray_node_id=str(data["ray_node_id"]),
            deadline_s=float(data["deadline_s"]),
            requested_at=float(data["requested_at"]),
            message=str(data.get("message") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


def clear_drain_request(paths: ClusterPaths, node: str) -> bool:
    """Remove the node's request (a drained launcher then rejoins); True if there was one."""
    try:
        paths.drain_request(node).unlink()
    except FileNotFoundError:
        return False
    return True


def drain_node_id(record: NodeRecord | None, ray_node_id: str | None) -> str | None:
    """The Ray node to drain, when its launcher can drain it (else delete it directly)."""
    if record is None or record.drain < phases.DRAIN_PROTOCOL:
        return None  # no launcher, or one rendered before draining existed
    return ray_node_id or record.ray_node_id


def drain_end(record: NodeRecord | None, now: float) -> DrainEnd | None:
    """Whether a requested drain is over, from the launcher's record.

    `drained`: the launcher drained Ray and stopped it. `gone`: its Ray node is not part of
    the cluster any more (launcher stopped, failed, or silent), so nothing is left to drain.
    """
    if record is None:
        return "gone"
    if record.phase == phases.DRAINED:  # by this request or an earlier one: Ray is stopped
        return "drained"
    gone = (phases.STOPPED, phases.FAILED, phases.RAY_EXITED, phases.RECOVERING)
    if record.phase in (*gone, phases.WAITING_FOR_HEAD):
        return "gone"
    if phases.is_stale(record, now):
        return "gone"
    return None
