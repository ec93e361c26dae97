"""The desired state of a cluster, kept in `cluster.json` in the project directory.

`up` and `scale` write it before touching any application, and `down` marks it `deleting`
first, so that an interrupted command, a rerun, or a healing observer all converge on the
same target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from raycai_core import __version__
from raycai_core.atomic import atomic_write_json, read_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.spec import ClusterSpec, SpecError, parse_spec

DesiredState = Literal["active", "suspended", "deleting"]
STATES = ("active", "suspended", "deleting")


@dataclass(frozen=True)
class Suspension:
    """Why and when a cluster was suspended (cluster.json's `suspended`; the head's idle
    check writes the same keys)."""

    at: float
    reason: str
    by: str  # "head" (idle) or "user"


@dataclass(frozen=True)
class Desired:
    spec: ClusterSpec
    state: DesiredState = "active"
    created_at: float = 0.0
    updated_at: float = 0.0
    suspension: Suspension | None = None  # set while state is "suspended"


class CorruptClusterFile(Exception):
    pass


def read_desired(paths: ClusterPaths) -> Desired | None:
    data = read_json(paths.cluster_json)
    if data is None:
        return None
    try:
        spec = parse_spec(data["spec"])
        state = data.get("state", "active")
        if state not in STATES:
            raise KeyError("state")
        return Desired(
            spec=spec,
            state=state,
            created_at=float(data.get("created_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
            suspension=_suspension(data) if state == "suspended" else None,
        )
    except (KeyError, TypeError, ValueError, SpecError) as exc:
        raise CorruptClusterFile(
            f"{paths.cluster_json} is not a valid raycai cluster file ({exc}); "
            "rerun `raycai up` with the cluster's spec to rewrite it"
        ) from None


def _suspension(data: dict) -> Suspension:
    info = data.get("suspended")
    info = info if isinstance(info, dict) else {}
    try:
        at = float(info.get("at") or data.get("updated_at") or 0.0)
    except (TypeError, ValueError):
        at = 0.0
    return Suspension(at=at, reason=str(info.get("reason") or ""), by=str(info.get("by") or ""))


def write_desired(
    paths: ClusterPaths,
    spec: ClusterSpec,
    state: DesiredState = "active",
    suspension: Suspension | None = None,
) -> None:
    now = time.time()
    try:
        previous = read_desired(paths)
    except CorruptClusterFile:
        previous = None
    created = previous.created_at if previous and previous.created_at else now
    atomic_write_json(
        paths.cluster_json,
        {
            "schema": 1,
            "raycai_version": __version__,
            "state": state,
            "created_at": created,
            "updated_at": now,
            "spec": spec.model_dump(mode="json"),
            **(
                {"suspended": {"at": s.at, "reason": s.reason, "by": s.by}}
                if state == "suspended" and (s := suspension or _kept(previous))
                else {}
            ),
        },
        sort_keys=False,  # the worker groups keep the order the user gave them
    )


def _kept(previous: Desired | None) -> Suspension:
    """A suspended cluster's record of why, kept by a rewrite that does not change it."""
    if previous is not None and previous.suspension is not None:
        return previous.suspension
    return Suspension(at=time.time(), reason="suspended", by="user")
