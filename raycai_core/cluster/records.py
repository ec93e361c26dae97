"""Read what the launchers write: the head's published address and each node's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from raycai_core.atomic import read_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.credentials import Secret


@dataclass(frozen=True)
class HeadAddress:
    ip: str
    gcs_port: int
    dashboard_port: int
    client_port: int
    started_at: float
    incarnation: str
    ray_version: str = ""
    # Where Serve's proxy listens on the head (on its loopback unless the spec says
    # `[serve] listen = "pod"`); None from a head launcher older than the head proxy.
    serve_port: int | None = None
    # The head application's port (the head proxy: Serve's routes under /serve and the
    # dashboard, with the token); None from an older head, whose dashboard had that port.
    app_port: int | None = None

    @property
    def gcs_address(self) -> str:
        return f"{self.ip}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.ip}:{self.dashboard_port}"

    @property
    def client_address(self) -> str:
        return f"ray://{self.ip}:{self.client_port}"

    @classmethod
    def from_json(cls, data: Any) -> HeadAddress | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                ip=str(data["ip"]),
                gcs_port=int(data["gcs_port"]),
                dashboard_port=int(data["dashboard_port"]),
                client_port=int(data.get("client_port") or 0),
                started_at=float(data.get("started_at") or 0.0),
                incarnation=str(data.get("incarnation") or ""),
                ray_version=str(data.get("ray_version") or ""),
                serve_port=int(data["serve_port"]) if data.get("serve_port") else None,
                app_port=int(data["app_port"]) if data.get("app_port") else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class AutoscalerRecord:
    """The head record's `autoscaler`: Ray's autoscaler beside the head (cluster/autoscaler.py);
    its `proxy` (the head proxy program) has the same shape.

    `state`: off (not running; `reason` says why), starting, running, restarting.
    """

    state: str
    reason: str | None = None
    pid: int | None = None
    restarts: int = 0
    since: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> AutoscalerRecord | None:
        if not isinstance(data, dict) or not data.get("state"):
            return None
        pid = data.get("pid")
        return cls(
            state=str(data["state"]),
            reason=(str(data["reason"]) if data.get("reason") else None),
            pid=pid if isinstance(pid, int) else None,
            restarts=_int(data.get("restarts")),
            since=_float(data.get("since")),
        )


@dataclass(frozen=True)
class NodeRecord:
    node: str
    role: str
    phase: str
    error: str | None = None
    ip: str | None = None
    ray_node_name: str | None = None
    head_incarnation: str | None = None
    started_at: float | None = None
    updated_at: float | None = None
    restarts: int = 0
    detail: str | None = None
    phase_since: float | None = None
    heartbeat_s: float | None = None  # the launcher's heartbeat interval (None: the default)
    ray_node_id: str | None = None  # hex id of its Ray node, once joined
    drain: int = 0  # drain-request protocol the launcher understands (0: none)
    autoscaler: AutoscalerRecord | None = None  # the head's, when the cluster autoscales
    proxy: AutoscalerRecord | None = None  # the head's proxy program (same shape)

    @classmethod
    def from_json(cls, data: Any) -> NodeRecord | None:
        if not isinstance(data, dict) or "node" not in data:
            return None
        return cls(
            node=str(data["node"]),
            role=str(data.get("role") or ""),
            phase=str(data.get("phase") or "unknown"),
            error=(str(data["error"]) if data.get("error") else None),
            ip=data.get("ip"),
            ray_node_name=data.get("ray_node_name"),
            head_incarnation=data.get("head_incarnation"),
            started_at=_float(data.get("started_at")),
            updated_at=_float(data.get("updated_at")),
            restarts=_int(data.get("restarts")),
            detail=(str(data["detail"]) if data.get("detail") else None),
            phase_since=_float(data.get("phase_since")),
            heartbeat_s=_float(data.get("heartbeat_s")),
            ray_node_id=(str(data["ray_node_id"]) if data.get("ray_node_id") else None),
            drain=_int(data.get("drain")),
            autoscaler=AutoscalerRecord.from_json(data.get("autoscaler")),
            proxy=AutoscalerRecord.from_json(data.get("proxy")),
        )

    @property
    def updated(self) -> datetime | None:
        if self.updated_at is None:
            return None
        return datetime.fromtimestamp(self.updated_at, tz=timezone.utc)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def read_head_address(paths: ClusterPaths) -> HeadAddress | None:
    return HeadAddress.from_json(read_json(paths.head_json))


def read_node_record(paths: ClusterPaths, node: str) -> NodeRecord | None:
    return NodeRecord.from_json(read_json(paths.node_record(node)))


def read_node_records(paths: ClusterPaths) -> dict[str, NodeRecord]:
    records: dict[str, NodeRecord] = {}
    if not paths.nodes_dir.is_dir():
        return records
    for file in paths.nodes_dir.glob("*.json"):
        record = NodeRecord.from_json(read_json(file))
        if record is not None:
            records[record.node] = record
    return records


def read_token(paths: ClusterPaths) -> Secret | None:
    try:
        value = paths.auth_token.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Secret(value) if value else None
