"""The one cluster-state vocabulary: launcher phases, exit codes, heartbeat, "joined".

The launcher template (stdlib only, runs on the nodes) gets these values rendered into its
vocabulary block (`LAUNCHER_CONSTANTS`), so the launchers, the CLI and the TUI read and write
the same words. `node_joined` is the single rule for "this node is part of the Ray cluster",
used by the clusters list, the cluster screen, `raycai list|status` and `wait_ready`.
"""

from __future__ import annotations

from raycai_core.cluster.records import NodeRecord

# Launcher phases, in the order a node usually goes through them.
STARTING = "starting"
CHECKING_RAY = "checking-ray"
WAITING_FOR_HEAD = "waiting-for-head"
STARTING_RAY = "starting-ray"
RUNNING = "running"  # the head: Ray up and head.json published
JOINED = "joined"  # a worker: its Ray node is in the cluster
REJOINING = "rejoining"  # a worker: the head restarted, joining the new one
RAY_EXITED = "ray-exited"
RECOVERING = "recovering"  # Ray exited unasked; the launcher starts it again in place
DRAINING = "draining"  # a worker: Ray schedules nothing new on it, its tasks finish
DRAINED = "drained"  # a worker: drained and its Ray stopped; waits to be deleted
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"  # fatal; the record's `error` says why

PHASES = (
    STARTING,
    CHECKING_RAY,
    WAITING_FOR_HEAD,
    STARTING_RAY,
    RUNNING,
    JOINED,
    REJOINING,
    RAY_EXITED,
    RECOVERING,
    DRAINING,
    DRAINED,
    STOPPING,
    STOPPED,
    FAILED,
)
READY_PHASES = frozenset({RUNNING, JOINED})
# Phases still on the way to being ready (the reason shown is the phase and its detail).
PROGRESS_PHASES = frozenset({STARTING, CHECKING_RAY, STARTING_RAY, REJOINING, RECOVERING})
# A removal in progress: healing leaves such a node alone.
LEAVING_PHASES = frozenset({DRAINING, DRAINED, STOPPING, STOPPED})

# Launcher exit codes.
EXIT_STOPPED = 0  # stopped on request
EXIT_RAY = 1  # Ray kept exiting on its own (in-place restarts spent): the platform's turn
EXIT_FATAL = 2  # configuration problem (Ray missing or wrong version, token file)
EXIT_REFUSED = 3  # the head refused this worker's token

# A launcher refreshes its record's updated_at at least this often; a record older than
# STALE_HEARTBEATS of them means the launcher is gone.
HEARTBEAT_S = 30.0
STALE_HEARTBEATS = 2

# Version of the drain-request protocol a launcher understands (its record's `drain`).
DRAIN_PROTOCOL = 1

# Rendered into the launcher template's vocabulary block, in this order.
LAUNCHER_CONSTANTS: dict[str, object] = {
    "STARTING": STARTING,
    "CHECKING_RAY": CHECKING_RAY,
    "WAITING_FOR_HEAD": WAITING_FOR_HEAD,
    "STARTING_RAY": STARTING_RAY,
    "RUNNING": RUNNING,
    "JOINED": JOINED,
    "REJOINING": REJOINING,
    "RAY_EXITED": RAY_EXITED,
    "RECOVERING": RECOVERING,
    "DRAINING": DRAINING,
    "DRAINED": DRAINED,
    "STOPPING": STOPPING,
    "STOPPED": STOPPED,
    "FAILED": FAILED,
    "EXIT_STOPPED": EXIT_STOPPED,
    "EXIT_RAY": EXIT_RAY,
    "EXIT_FATAL": EXIT_FATAL,
    "EXIT_REFUSED": EXIT_REFUSED,
    "HEARTBEAT_S": HEARTBEAT_S,
    "DRAIN_PROTOCOL": DRAIN_PROTOCOL,
}


def stale_after(record: NodeRecord) -> float:
    """Seconds without a heartbeat after which `record`'s launcher counts as gone."""
    return STALE_HEARTBEATS * (record.heartbeat_s or HEARTBEAT_S)


def silent_for(record: NodeRecord, now: float) -> float | None:
    """Seconds since the launcher last wrote its record, when that is past the stale limit."""
    if record.updated_at is None:
        return None
    age = now - record.updated_at
    return age if age > stale_after(record) else None


def is_stale(record: NodeRecord, now: float) -> bool:
    return silent_for(record, now) is not None


def launcher_gone_reason(record: NodeRecord, now: float) -> str | None:
    age = silent_for(record, now)
    return None if age is None else f"launcher gone: no heartbeat for {int(age)} s"


def node_joined(
    app_running: bool, record: NodeRecord | None, ray_alive: bool | None, now: float
) -> bool:
    """Is this node part of the Ray cluster?

    `ray_alive` is what Ray's own node list says (None when Ray was not asked or did not
    answer). Ray decides when it answered; otherwise the launcher's record does: a ready
    phase from a launcher that is still alive, on a running application.
    """
    if ray_alive is not None:
        return ray_alive
    if not app_running or record is None:
        return False
    return record.phase in READY_PHASES and not is_stale(record, now)
