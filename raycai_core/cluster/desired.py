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

DesiredState = Literal["active", "deleting"]


@dataclass(frozen=True)
class Desired:
    spec: ClusterSpec
    state: DesiredState = "active"
    created_at: float = 0.0
    updated_at: float = 0.0


class CorruptClusterFile(Exception):
    pass


def read_desired(paths: ClusterPaths) -> Desired | None:
    data = read_json(paths.cluster_json)
    if data is None:
        return None
    try:
        spec = parse_spec(data["spec"])
        state = data.get("state", "active")
        if state not in ("active", "deleting"):
            raise KeyError("state")
        return Desired(
            spec=spec,
            state=state,
            created_at=float(data.get("created_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
        )
    except (KeyError, TypeError, ValueError, SpecError) as exc:
        raise CorruptClusterFile(
            f"{paths.cluster_json} is not a valid raycai cluster file ({exc}); "
            "rerun `raycai up` with the cluster's spec to rewrite it"
        ) from None


def write_desired(paths: ClusterPaths, spec: ClusterSpec, state: DesiredState = "active") -> None:
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
        },
        sort_keys=False,  # the worker groups keep the order the user gave them
    )
