"""Who keeps a cluster: Ray's autoscaler on its head, or raycai (the TUI, `raycai heal`).

One reconciler per cluster. A cluster with any autoscaled worker group whose head launcher runs
Ray's autoscaler (the head record's `autoscaler.state` is starting, running or restarting,
from a launcher that is still alive) is kept by that autoscaler: raycai's healing leaves it
alone and a manual scale moves the autoscaler's bounds instead of creating or deleting
applications. Otherwise (a fixed-size cluster, or the autoscaler off: no key, not rendered,
head down) raycai keeps it at its minimum size as it always did.
"""

from __future__ import annotations

import time

from raycai_core.cluster import phases
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import NodeRecord, read_node_record
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec

OFF = "off"
STARTING = "starting"
RUNNING = "running"
RESTARTING = "restarting"
KEEPING_STATES = frozenset({STARTING, RUNNING, RESTARTING})
# Head phases in which its launcher no longer supervises an autoscaler.
_HEAD_GONE = frozenset({phases.RAY_EXITED, phases.STOPPING, phases.STOPPED, phases.FAILED})

KEPT_BY_AUTOSCALER = "the cluster's autoscaler"
KEPT_BY_RAYCAI = "raycai healing (raycai-tui or raycai heal)"
KEPT_BY_NOBODY = "nobody (healing is off for this cluster)"


def autoscaling_on(spec: ClusterSpec) -> bool:
    """Does the cluster run Ray's autoscaler (any worker group with `autoscale`)? Its other
    groups are then kept by it too, at their fixed counts (min = max)."""
    return any(group.autoscale for group in spec.groups.values())


def autoscaler_running(head: NodeRecord | None, now: float | None = None) -> bool:
    """Does Ray's autoscaler on the head keep this cluster's workers right now?"""
    if head is None or head.autoscaler is None:
        return False
    if head.autoscaler.state not in KEEPING_STATES or head.phase in _HEAD_GONE:
        return False
    return not phases.is_stale(head, time.time() if now is None else now)


def autoscaler_keeps(paths: ClusterPaths, desired: Desired | None) -> bool:
    """`autoscaler_running` for a cluster on disk (reads the head's record)."""
    if desired is None or desired.state != "active" or not autoscaling_on(desired.spec):
        return False
    return autoscaler_running(read_node_record(paths, HEAD_NODE))


def keeper(desired: Desired | None, head: NodeRecord | None, now: float | None = None) -> str:
    """Who keeps the cluster, in words for the screen and `raycai status`."""
    if desired is not None and autoscaling_on(desired.spec) and autoscaler_running(head, now):
        return KEPT_BY_AUTOSCALER
    if desired is not None and not desired.spec.healing:
        return KEPT_BY_NOBODY
    return KEPT_BY_RAYCAI


def bounds_note(
    before_min: int, before_max: int, after_min: int, after_max: int, group: str | None = None
) -> str:
    """What a manual scale did to an autoscaled cluster (to `group`'s bounds when named)."""
    workers = f"group {group} workers" if group else "workers"
    note = f"autoscaling: min {workers} {before_min} -> {after_min}"
    if after_max != before_max:
        note += f", max {before_max} -> {after_max}"
    else:
        note += f" (max {after_max})"
    return note + "; the cluster's autoscaler adds or removes the workers"
