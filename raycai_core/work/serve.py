"""Ray Serve's state as `GET /api/serve/applications/` reports it (Ray 2.60 shapes).

Ray dumps this answer with `exclude_unset=True`, so any field may be missing; parsing keeps
what is there. No Serve controller: 200 with empty `controller_info` and `applications`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raycai_core.ray_dashboard import UnexpectedAnswer
from raycai_core.work.access import SERVE_HTTP_PORT

HEALTHY_APP = "RUNNING"
HEALTHY_DEPLOYMENTS = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})


@dataclass(frozen=True)
class ServeDeployment:
    name: str
    status: str
    message: str
    target_replicas: int | None
    replicas: dict[str, int]  # replica state -> count

    @property
    def running_replicas(self) -> int:
        return self.replicas.get("RUNNING", 0)

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY_DEPLOYMENTS

    def replicas_text(self) -> str:
        """e.g. `2/2 RUNNING` or `1/3 RUNNING, 2 STARTING`."""
        target = "?" if self.target_replicas is None else str(self.target_replicas)
        parts = [f"{self.running_replicas}/{target} RUNNING"]
        others = sorted((s, n) for s, n in self.replicas.items() if s != "RUNNING")
        parts += [f"{n} {state}" for state, n in others]
        return ", ".join(parts)


@dataclass(frozen=True)
class ServeApplication:
    name: str
    status: str
    route_prefix: str | None
    message: str
    last_deployed: float | None
    deployments: list[ServeDeployment] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY_APP


@dataclass(frozen=True)
class ServeStatus:
    running: bool  # a Serve controller exists
    applications: list[ServeApplication]
    http_port: int = SERVE_HTTP_PORT
    http_host: str | None = None

    def route_url(self, head_ip: str, app: ServeApplication) -> str | None:
        """The route as reachable from the project's pods (the head's proxy)."""
        if app.route_prefix is None:
            return None
        return f"http://{head_ip}:{self.http_port}{app.route_prefix}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_deployment(name: str, item: Any) -> ServeDeployment:
    item = _mapping(item)
    replicas = item.get("replicas")
    states = Counter(
        _text(r.get("state")) or "UNKNOWN"
        for r in (replicas if isinstance(replicas, list) else [])
        if isinstance(r, Mapping)
    )
    target = item.get("target_num_replicas")
    return ServeDeployment(
        name=_text(item.get("name")) or name,
        status=_text(item.get("status")) or "UNKNOWN",
        message=_text(item.get("message")),
        target_replicas=_integer(target),
        replicas=dict(states),
    )


def parse_application(name: str, item: Any) -> ServeApplication:
    item = _mapping(item)
    route = item.get("route_prefix")
    deployed = item.get("last_deployed_time_s")
    deployments = _mapping(item.get("deployments"))
    return ServeApplication(
        name=_text(item.get("name")) or name,
        status=_text(item.get("status")) or "UNKNOWN",
        route_prefix=route if isinstance(route, str) else None,
        message=_text(item.get("message")),
        last_deployed=float(deployed) if isinstance(deployed, (int, float)) else None,
        deployments=[parse_deployment(str(n), d) for n, d in sorted(deployments.items())],
    )


def parse_serve(payload: Any) -> ServeStatus:
    if not isinstance(payload, Mapping):
        raise UnexpectedAnswer("the Serve status is not a JSON object")
    applications = _mapping(payload.get("applications"))
    http = _mapping(payload.get("http_options"))
    port = http.get("port")
    host = http.get("host")
    return ServeStatus(
        running=bool(_mapping(payload.get("controller_info"))) or bool(applications),
        applications=[parse_application(str(n), a) for n, a in sorted(applications.items())],
        http_port=_integer(port) or SERVE_HTTP_PORT,
        http_host=host if isinstance(host, str) else None,
    )
