"""Pure parsers of Ray 2.60 dashboard answers into `raycai_core.ray.models`.

Node, usage and log answers come in Ray's `{"result", "msg", "data"}` envelope and refuse any
other shape (`UnexpectedAnswer`). Jobs and Serve never fail on a missing or mistyped field (a
job then shows what is known); only an answer that is not the expected JSON container is
refused. `LineSplitter` turns a streamed log into lines.
"""

from __future__ import annotations

import codecs
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from raycai_core.ray.errors import UnexpectedAnswer
from raycai_core.ray.models import (
    SERVE_HTTP_PORT,
    STATUSES,
    ClusterUsage,
    JobInfo,
    RayNode,
    ResourceDemand,
    ResourceUsage,
    ServeApplication,
    ServeDeployment,
    ServeStatus,
)

# -- envelope -------------------------------------------------------------------------------


def _envelope_data(payload: Any) -> dict[str, Any]:
    """`data` of Ray's `{"result": bool, "msg": str, "data": {...}}` envelope."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise UnexpectedAnswer("no 'data' object in the answer")
    if payload.get("result") is False:
        raise UnexpectedAnswer(str(payload.get("msg") or "the dashboard reported a failure"))
    return payload["data"]


def _list_result(payload: Any) -> dict[str, Any]:
    result = _envelope_data(payload).get("result")
    if not isinstance(result, dict):
        raise UnexpectedAnswer("no 'data.result' object in the answer")
    return result


def _seconds_from_ms(value: Any) -> float | None:
    """Unix milliseconds -> seconds; 0 (Ray's end_time_ms of a live node) or junk -> None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return value / 1000.0


# -- nodes ----------------------------------------------------------------------------------


def parse_node(item: Mapping[str, Any]) -> RayNode:
    """One item of `GET /api/v0/nodes?detail=true` (labels and start time need `detail`)."""
    return RayNode(
        node_id=str(item.get("node_id", "")),
        node_ip=str(item.get("node_ip", "")),
        node_name=str(item.get("node_name") or ""),
        is_head=bool(item.get("is_head_node", False)),
        state=str(item.get("state", "")),
        state_message=item.get("state_message") or None,
        labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
        resources_total={str(k): float(v) for k, v in (item.get("resources_total") or {}).items()},
        start_time=_seconds_from_ms(item.get("start_time_ms")),
        end_time=_seconds_from_ms(item.get("end_time_ms")),
    )


def parse_nodes(payload: Any) -> list[RayNode]:
    """`GET /api/v0/nodes` -> nodes (head first, then by name)."""
    items = _list_result(payload).get("result") or []
    nodes = [parse_node(item) for item in items if isinstance(item, dict)]
    return sorted(nodes, key=lambda n: (not n.is_head, n.node_name, n.node_id))


# -- cluster status -------------------------------------------------------------------------


def ray_camel_case(name: str) -> str:
    """Ray's `to_camel_case`, which `/api/cluster_status` applies to every dict key."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _usage_map(raw: Any, names: Mapping[str, str]) -> dict[str, ResourceUsage]:
    usage: dict[str, ResourceUsage] = {}
    if not isinstance(raw, dict):
        return usage
    for key, pair in raw.items():
        name = names.get(key, key)
        if name.startswith("node:"):
            continue
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            usage[name] = ResourceUsage(used=float(pair[0]), total=float(pair[1]))
    return usage


def _shape(raw: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _pairs(raw: Any) -> list[tuple[Any, int]]:
    """Ray's `[[item, count], ...]` lists."""
    if not isinstance(raw, list):
        return []
    return [
        (entry[0], int(entry[1]))
        for entry in raw
        if isinstance(entry, (list, tuple)) and len(entry) == 2
    ]


def parse_cluster_usage(payload: Any) -> ClusterUsage:
    """`GET /api/cluster_status` -> used/total per resource and node, and pending demand.

    Ray camelCases every dict key of this answer (`objectStoreMemory`, custom `my_res` ->
    `myRes`), except inside lists. `nodeTypes` is such a list and carries the real resource
    names, so the camelCased keys are mapped back through it.
    """
    data = _envelope_data(payload)
    status = data.get("clusterStatus")
    error = data.get("autoscalingError") or None
    if not isinstance(status, dict):
        return ClusterUsage({}, {}, [], None, error)
    report = status.get("loadMetricsReport")
    report = report if isinstance(report, dict) else {}

    names = {ray_camel_case(n): n for n in ("object_store_memory", "CPU", "GPU", "memory")}
    for shape, _count in _pairs(report.get("nodeTypes")):
        if isinstance(shape, dict):
            names.update({ray_camel_case(str(n)): str(n) for n in shape})

    by_node_raw = report.get("usageByNode")
    by_node = {
        str(node_id): _usage_map(usage, names)
        for node_id, usage in (by_node_raw.items() if isinstance(by_node_raw, dict) else ())
    }

    demand = [
        ResourceDemand("task", _shape(shape), count)
        for shape, count in _pairs(report.get("resourceDemand"))
    ]
    for group, count in _pairs(report.get("pgDemand")):
        if not isinstance(group, dict):
            continue
        bundles = tuple((_shape(b), n) for b, n in _pairs(group.get("bundles")))
        shape: dict[str, float] = {}
        for bundle, n in bundles:
            for name, amount in bundle.items():
                shape[name] = shape.get(name, 0.0) + amount * n
        strategy = group.get("strategy")
        demand.append(
            ResourceDemand(
                "placement_group",
                shape,
                count,
                strategy=str(strategy) if strategy else None,
                bundles=bundles,
            )
        )
    demand.extend(
        ResourceDemand("request", _shape(shape), count)
        for shape, count in _pairs(report.get("requestDemand"))
    )

    report_time = status.get("time")
    return ClusterUsage(
        resources=_usage_map(report.get("usage"), names),
        by_node=by_node,
        demand=demand,
        report_time=float(report_time) if isinstance(report_time, (int, float)) else None,
        autoscaling_error=error,
    )


# -- logs -----------------------------------------------------------------------------------


def parse_log_listing(payload: Any) -> dict[str, list[str]]:
    """`GET /api/v0/logs` -> category -> sorted file names (sub-directories left out)."""
    result = _envelope_data(payload).get("result")
    if not isinstance(result, dict):
        raise UnexpectedAnswer("no 'data.result' object in the log listing")
    return {
        str(category): sorted(str(f) for f in files if not str(f).endswith("/"))
        for category, files in result.items()
        if isinstance(files, list)
    }


class LineSplitter:
    """Turns byte chunks (which may split lines and UTF-8 characters) into whole lines.

    A line that never ends is cut every `max_line` characters, so memory stays bounded.
    """

    def __init__(self, max_line: int = 64 * 1024) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        *lines, self._pending = (self._pending + self._decoder.decode(chunk)).split("\n")
        while len(self._pending) > self.max_line:
            lines.append(self._pending[: self.max_line])
            self._pending = self._pending[self.max_line :]
        return [line.removesuffix("\r") for line in lines]

    def flush(self) -> str | None:
        """The unterminated rest, if any."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return rest.removesuffix("\r") or None


# -- jobs -----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_job(item: Any) -> JobInfo:
    if not isinstance(item, Mapping):
        raise UnexpectedAnswer("a job is not a JSON object")
    submission_id = _optional_text(item.get("submission_id"))
    job_id = _optional_text(item.get("job_id"))
    driver = item.get("driver_info")
    exit_code = item.get("driver_exit_code")
    status = _text(item.get("status")).upper()
    return JobInfo(
        id=submission_id or job_id or "?",
        type=_text(item.get("type")) or ("SUBMISSION" if submission_id else "DRIVER"),
        status=status if status in STATUSES else "UNKNOWN",
        entrypoint=_text(item.get("entrypoint")),
        message=_text(item.get("message")),
        error_type=_optional_text(item.get("error_type")),
        submission_id=submission_id,
        job_id=job_id,
        start_time=_seconds_from_ms(item.get("start_time")),
        end_time=_seconds_from_ms(item.get("end_time")),
        driver_exit_code=exit_code if isinstance(exit_code, int) else None,
        driver_node_ip=(
            _optional_text(driver.get("node_ip_address")) if isinstance(driver, Mapping) else None
        ),
    )


def parse_jobs(payload: Any) -> list[JobInfo]:
    """`GET /api/jobs/` -> jobs, newest first (entries that are not objects are left out)."""
    if not isinstance(payload, list):
        raise UnexpectedAnswer("the job list is not a JSON array")
    jobs = [parse_job(item) for item in payload if isinstance(item, Mapping)]
    return sorted(jobs, key=lambda j: (j.start_time or math.inf, j.id), reverse=True)


# -- serve ----------------------------------------------------------------------------------
# Ray dumps `GET /api/serve/applications/` with `exclude_unset=True`, so any field may be
# missing. No Serve controller: 200 with empty `controller_info` and `applications`.


def parse_deployment(name: str, item: Any) -> ServeDeployment:
    item = _mapping(item)
    replicas = item.get("replicas")
    states = Counter(
        _text(r.get("state")) or "UNKNOWN"
        for r in (replicas if isinstance(replicas, list) else [])
        if isinstance(r, Mapping)
    )
    return ServeDeployment(
        name=_text(item.get("name")) or name,
        status=_text(item.get("status")) or "UNKNOWN",
        message=_text(item.get("message")),
        target_replicas=_integer(item.get("target_num_replicas")),
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
    host = http.get("host")
    return ServeStatus(
        running=bool(_mapping(payload.get("controller_info"))) or bool(applications),
        applications=[parse_application(str(n), a) for n, a in sorted(applications.items())],
        http_port=_integer(http.get("port")) or SERVE_HTTP_PORT,
        http_host=host if isinstance(host, str) else None,
    )
