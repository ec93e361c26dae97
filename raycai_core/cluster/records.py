"""Read what the launchers write: the head's published address and each node's status."""

from __future__ import annotations

from collections.abc import Mapping
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
class Recovery:
    """One restart of Ray inside its application by the launcher (`recoveries` in a node
    record): when, why (Ray's exit), whether the head's GCS state was kept, and where the
    crashed session's Ray logs are (kept on the node's disk)."""

    at: float
    why: str
    state_kept: bool | None = None
    logs: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Recovery | None:
        if not isinstance(data, dict) or _float(data.get("at")) is None:
            return None
        kept = data.get("state_kept")
        return cls(
            at=float(data["at"]),
            why=str(data.get("why") or ""),
            state_kept=kept if isinstance(kept, bool) else None,
            logs=(str(data["logs"]) if data.get("logs") else None),
        )

    def describe(self, node: str) -> str:
        if node != "head":
            return f"{node}: Ray restarted in place after {self.why}"
        if self.state_kept is False:
            return f"head restarted with a new state after {self.why}"
        return f"head restarted (state kept) after {self.why}"


@dataclass(frozen=True)
class ServeReapplied:
    """The head's `serve_reapplied`: the stored Serve config deployed again by the head after
    it came back without its state (`error` when Ray refused it)."""

    at: float
    apps: int = 0
    error: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ServeReapplied | None:
        if not isinstance(data, dict) or _float(data.get("at")) is None:
            return None
        return cls(
            at=float(data["at"]),
            apps=_int(data.get("apps")),
            error=(str(data["error"]) if data.get("error") else None),
        )

    def describe(self) -> str:
        if self.error:
            return f"head restarted on a new pod; re-applying the Serve config failed: {self.error}"
        apps = f"{self.apps} application" + ("" if self.apps == 1 else "s")
        return f"head restarted on a new pod, Serve config re-applied ({apps})"


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
    ray_restarts: int = 0  # Ray restarted inside the application (`restarts`: the platform's)
    recoveries: tuple[Recovery, ...] = ()  # the last few of them
    serve_reapplied: ServeReapplied | None = None

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
            ray_restarts=_int(data.get("ray_restarts")),
            recoveries=tuple(
                r for r in map(Recovery.from_json, data.get("recoveries") or []) if r is not None
            )
            if isinstance(data.get("recoveries"), list)
            else (),
            serve_reapplied=ServeReapplied.from_json(data.get("serve_reapplied")),
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


def recovery_notes(
    before: Mapping[str, NodeRecord], after: Mapping[str, NodeRecord]
) -> list[tuple[str, str, str]]:
    """(node, text, level) for what recovered between two readings of the node records:
    Ray restarted in place, the platform's restart of an application, the Serve config
    re-applied by a head that lost its state. Nodes first seen in `after` say nothing (the
    first reading is the baseline, not news)."""
    notes: list[tuple[str, str, str]] = []
    for node, record in after.items():
        old = before.get(node)
        if old is None:
            continue
        seen = {r.at for r in old.recoveries}
        for recovery in record.recoveries:
            if recovery.at not in seen:
                notes.append((node, recovery.describe(node), "warning"))
        if record.restarts > old.restarts:
            notes.append((node, f"{node}: the platform restarted its application", "warning"))
        done = record.serve_reapplied
        if done is not None and (old.serve_reapplied is None or old.serve_reapplied.at != done.at):
            notes.append((node, done.describe(), "error" if done.error else "info"))
    return notes
