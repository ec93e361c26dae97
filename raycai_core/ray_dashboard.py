"""Async client for the Ray 2.60 dashboard's HTTP API (httpx; never imports ray).

Covers what the CLI and the TUI show: the node list and counts (`/api/v0/nodes`, real time),
used vs total resources and pending demand (`/api/cluster_status`, lags a few seconds), log
files per node (list, tail, follow) and the head's health, version and auth mode.

With Ray token authentication the client sends `Authorization: Bearer <token>`; the token is
kept as a `Secret` and no repr, log line or error message contains it.

Every failure is a `RayDashboardError`: `RayDashboardUnreachable` (nothing answered, or a log
stream was cut), `RayDashboardAuthError` (401 no token / 403 wrong token) or
`RayDashboardServerError` (5xx; Ray answers log errors with a 500 and a plain-text reason).
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from glob import escape as glob_escape
from typing import Any

import httpx

from raycai_core.credentials import Secret

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
NODE_LIST_LIMIT = 1000

# Ray's own text for the two token refusals (dashboard/http_server_head.py, 2.60).
_RAY_MISSING_TOKEN = "Missing authentication token"
_RAY_INVALID_TOKEN = "Invalid authentication token"


# -- errors ---------------------------------------------------------------------------------


class RayDashboardError(Exception):
    """A dashboard call failed. `status` is the HTTP status, or None when none arrived."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        operation: str = "",
        status: int | None = None,
        server_message: str = "",
    ) -> None:
        self.url = url
        self.operation = operation
        self.status = status
        self.server_message = server_message
        super().__init__(message)


class RayDashboardUnreachable(RayDashboardError):
    """No answer: connection refused or reset, DNS failure, or a timeout."""


class RayLogStreamLost(RayDashboardUnreachable):
    """A followed log stream was cut: its node, its dashboard agent or the head stopped."""


class RayDashboardAuthError(RayDashboardError):
    """The dashboard refused the request: 401 (no token sent) or 403 (wrong token)."""


class RayDashboardServerError(RayDashboardError):
    """The dashboard answered 5xx; `server_message` holds Ray's plain-text reason."""


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayNode:
    node_id: str
    node_ip: str
    node_name: str
    is_head: bool
    state: str  # "ALIVE" or "DEAD"
    state_message: str | None
    labels: dict[str, str] = field(default_factory=dict)
    resources_total: dict[str, float] = field(default_factory=dict)
    start_time: float | None = None  # unix seconds
    end_time: float | None = None  # unix seconds; None while alive

    @property
    def alive(self) -> bool:
        return self.state == "ALIVE"


@dataclass(frozen=True)
class NodeCounts:
    alive: int
    dead: int

    @property
    def total(self) -> int:
        return self.alive + self.dead


@dataclass(frozen=True)
class ResourceUsage:
    used: float
    total: float

    @property
    def available(self) -> float:
        return self.total - self.used

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


_NO_USAGE = ResourceUsage(0.0, 0.0)


@dataclass(frozen=True)
class ResourceDemand:
    """Resources that wait for room: `count` times the bundle `shape`.

    `kind` is "task" (tasks and actors), "placement_group" (one entry per pending group, with
    its `bundles` and `strategy`) or "request" (`ray.autoscaler.sdk.request_resources`).
    """

    kind: str
    shape: dict[str, float]
    count: int
    strategy: str | None = None
    bundles: tuple[tuple[dict[str, float], int], ...] = ()


@dataclass(frozen=True)
class ClusterUsage:
    """Logical resources used vs total, from the autoscaler's last report (lags 2-8 s).

    Resource names are Ray's (CPU, GPU, memory, object_store_memory, custom ones); memory and
    object_store_memory are bytes. `node:*` placement markers are left out. `report_time` is
    None until the first report exists (the first seconds after the head starts).
    """

    resources: dict[str, ResourceUsage]
    by_node: dict[str, dict[str, ResourceUsage]]  # node id -> resource -> usage
    demand: list[ResourceDemand]
    report_time: float | None
    autoscaling_error: str | None = None

    @property
    def cpu(self) -> ResourceUsage:
        return self.resources.get("CPU", _NO_USAGE)

    @property
    def gpu(self) -> ResourceUsage:
        return self.resources.get("GPU", _NO_USAGE)

    @property
    def memory(self) -> ResourceUsage:
        return self.resources.get("memory", _NO_USAGE)

    @property
    def object_store_memory(self) -> ResourceUsage:
        return self.resources.get("object_store_memory", _NO_USAGE)

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the report was made (head clock), or None without a report."""
        if self.report_time is None:
            return None
        return (time.time() if now is None else now) - self.report_time


@dataclass(frozen=True)
class HeadHealth:
    healthy: bool
    message: str


@dataclass(frozen=True)
class RayVersion:
    ray_version: str
    ray_commit: str
    session_name: str


# -- parsers (pure; the JSON shapes are Ray 2.60's) -----------------------------------------


class UnexpectedAnswer(ValueError):
    """The JSON does not have the shape the Ray 2.60 dashboard sends."""


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
    # Ray sends end_time_ms = 0 for a live node.
    return value / 1000.0 if isinstance(value, (int, float)) and value > 0 else None


def parse_node(item: Mapping[str, Any]) -> RayNode:
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


def parse_node_counts(payload: Any) -> NodeCounts:
    """`GET /api/v0/nodes` filtered on state=ALIVE: alive = num_filtered, dead = the rest."""
    result = _list_result(payload)
    total, alive = result.get("total"), result.get("num_filtered")
    if not isinstance(total, int) or not isinstance(alive, int):
        raise UnexpectedAnswer("no 'total'/'num_filtered' counts in the node list")
    return NodeCounts(alive=alive, dead=max(total - alive, 0))


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


# -- client ---------------------------------------------------------------------------------


def normalise_base_url(value: str) -> str:
    """`127.0.0.2:8265` -> `http://127.0.0.2:8265`; no trailing slash."""
    url = value.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "no connection within the connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "connected, but no answer within the timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed mid-answer"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()  # e.g. "connection refused"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


class RayDashboardClient:
    """One Ray dashboard. Use as `async with RayDashboardClient(url, token=...) as ray: ...`."""

    def __init__(
        self,
        base_url: str,
        token: Secret | str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self._token = Secret(token) if isinstance(token, str) else token
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        headers = {"User-Agent": "raycai", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def __repr__(self) -> str:
        token = "set" if self._token else "none"
        return f"RayDashboardClient(base_url={self.base_url!r}, token=<{token}>)"

    async def __aenter__(self) -> RayDashboardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._token and self._token.reveal() in text:
            text = text.replace(self._token.reveal(), "********")
        return text

    def _unreachable(
        self, exc: httpx.TransportError, operation: str, what: str = ""
    ) -> RayDashboardUnreachable:
        reason = self._scrub(_reason(exc))
        message = f"Cannot reach the Ray dashboard at {self.base_url} ({reason})"
        message += f" while {what}" if what else f": {operation}"
        message += "; is the head running and the address right?"
        return RayDashboardUnreachable(message, url=self.base_url, operation=operation)

    def _status_error(
        self, response: httpx.Response, operation: str, what: str = ""
    ) -> RayDashboardError:
        status = response.status_code
        body = self._scrub(response.content.decode("utf-8", errors="replace").strip())
        # aiohttp's generic page when a handler raised: say what failed instead.
        server_message = body[:500] if "Server got itself in trouble" not in body else ""
        doing = f" while {what}" if what else ""
        where = f"The Ray dashboard at {self.base_url}"
        cls: type[RayDashboardError]
        if status == 401:
            cls = RayDashboardAuthError
            if not self._token:
                message = (
                    f"{where} requires a Ray token (token authentication is on) and none was "
                    "given: pass the cluster's token (its auth_token file)"
                )
            elif _RAY_MISSING_TOKEN in body:
                message = (
                    f"{where} did not receive the Ray token that was sent (does a proxy in "
                    "front of it drop the Authorization header?)"
                )
            else:
                message = f"{where} refused the request (HTTP 401): {server_message}"
        elif status == 403:
            cls = RayDashboardAuthError
            if _RAY_INVALID_TOKEN in body:
                message = (
                    f"{where} refused the Ray token: it is not this cluster's token "
                    "(check the cluster's auth_token file)"
                )
            else:
                message = f"{where} refused the request (HTTP 403): {server_message}"
        elif status >= 500:
            cls = RayDashboardServerError
            reason = server_message or "an internal error (no reason given)"
            message = f"Ray dashboard error{doing} (HTTP {status}): {reason}"
        elif 300 <= status < 400:
            cls = RayDashboardError
            location = response.headers.get("location", "?")
            message = (
                f"{where} redirected {operation} to {location}: the URL does not seem to be "
                "a Ray dashboard (a login page in front of it?)"
            )
        else:
            cls = RayDashboardError
            message = f"Ray dashboard answered HTTP {status}{doing}: {server_message}"
        if "doesn't exist" in body and "Agent for node" in body:
            message += " (the node is dead or unknown; a dead node's logs are gone)"
        elif what.startswith("listing the logs") and not server_message:
            message += " (is the node dead? a dead node's logs are gone)"
        return cls(
            message,
            url=self.base_url,
            operation=operation,
            status=status,
            server_message=server_message,
        )

    async def _get(
        self, path: str, params: dict[str, Any] | None = None, what: str = ""
    ) -> httpx.Response:
        """GET `path`, returning the response after mapping failures to the error family."""
        operation = f"GET {path}"
        try:
            response = await self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, operation, what) from None
        if response.status_code != 200:
            raise self._status_error(response, operation, what)
        return response

    async def _get_json(
        self, path: str, params: dict[str, Any] | None = None, what: str = ""
    ) -> Any:
        response = await self._get(path, params, what)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(f"GET {path}", "the answer is not JSON") from None

    def _unexpected(self, operation: str, detail: str) -> RayDashboardError:
        return RayDashboardError(
            f"Unexpected answer from {self.base_url} to {operation} ({detail}); "
            "is this a Ray 2.60 dashboard?",
            url=self.base_url,
            operation=operation,
            status=200,
        )

    def _parsed(self, operation: str, parse: Any, payload: Any) -> Any:
        try:
            return parse(payload)
        except (UnexpectedAnswer, LookupError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected(operation, self._scrub(str(exc))) from None

    # -- nodes and resources ---------------------------------------------------------------

    async def nodes(
        self, *, alive_only: bool = False, limit: int = NODE_LIST_LIMIT
    ) -> list[RayNode]:
        """Every node the GCS knows (dead ones stay listed), head first."""
        params: dict[str, Any] = {"limit": limit, "detail": "true"}
        if alive_only:
            params.update(filter_keys="state", filter_predicates="=", filter_values="ALIVE")
        payload = await self._get_json("/api/v0/nodes", params, "listing the nodes")
        return self._parsed("GET /api/v0/nodes", parse_nodes, payload)

    async def node_counts(self) -> NodeCounts:
        """Alive and dead node counts in one small call."""
        params = {
            "limit": 1,
            "filter_keys": "state",
            "filter_predicates": "=",
            "filter_values": "ALIVE",
        }
        payload = await self._get_json("/api/v0/nodes", params, "counting the nodes")
        return self._parsed("GET /api/v0/nodes", parse_node_counts, payload)

    async def cluster_usage(self) -> ClusterUsage:
        """Used vs total resources, per node too, and pending demand (lags 2-8 s)."""
        payload = await self._get_json("/api/cluster_status", None, "reading the cluster status")
        return self._parsed("GET /api/cluster_status", parse_cluster_usage, payload)

    # -- logs ------------------------------------------------------------------------------

    async def list_logs(self, node_id: str, glob: str | None = None) -> dict[str, list[str]]:
        """Log files of a live node by category (raylet, worker_out, ...); `glob` filters."""
        params = {"node_id": node_id}
        if glob:
            params["glob"] = glob
        what = f"listing the logs of node {node_id[:12]}"
        payload = await self._get_json("/api/v0/logs", params, what)
        return self._parsed("GET /api/v0/logs", parse_log_listing, payload)

    async def tail_log(self, node_id: str, filename: str, lines: int = 100) -> str:
        """The last `lines` lines of a node's log file (Ray reads 0 as 1000, -1 as all)."""
        params = {"node_id": node_id, "filename": filename, "lines": lines}
        what = f"reading {filename} of node {node_id[:12]}"
        response = await self._get("/api/v0/logs/file", params, what)
        if not response.content:
            await self._check_listed(node_id, filename, "GET /api/v0/logs/file", what)
        return response.content.decode("utf-8", errors="replace")

    async def _check_listed(self, node_id: str, filename: str, operation: str, what: str) -> None:
        # Ray 2.60 now and then answers a missing file with an empty 200 instead of its 500
        # (a race in the log agent's gRPC metadata), so an empty answer is checked.
        listing = await self.list_logs(node_id, glob=glob_escape(filename))
        if not any(filename in files for files in listing.values()):
            raise RayDashboardServerError(
                f"Ray dashboard error while {what}: the file is not found on that node",
                url=self.base_url,
                operation=operation,
                server_message=f"A file is not found: {filename}",
            )

    async def stream_log(
        self,
        node_id: str,
        filename: str,
        *,
        lines: int = 50,
        interval: float = 0.5,
        strip_ansi: bool = False,
    ) -> AsyncIterator[str]:
        """Follow a node's log file: its last `lines` lines, then each line as it is written.

        Yields whole lines without their newline. Runs until the caller stops iterating
        (close it with `contextlib.aclosing` or by breaking out of `async for`) or Ray ends
        the stream; raises `RayLogStreamLost` when the node or the head goes away. Ray polls
        the file every `interval` seconds and sends nothing (not even headers) until the file
        has bytes.
        """
        operation = "GET /api/v0/logs/stream"
        what = f"following {filename} of node {node_id[:12]}"
        params: dict[str, Any] = {
            "node_id": node_id,
            "filename": filename,
            "lines": lines,
            "interval": interval,
        }
        if strip_ansi:
            params["filter_ansi_code"] = "true"
        # A followed file may stay quiet for hours: no read timeout.
        timeout = httpx.Timeout(
            None,
            connect=self._timeout.connect,
            write=self._timeout.write,
            pool=self._timeout.pool,
        )
        splitter = LineSplitter()
        started = False
        try:
            async with self._http.stream(
                "GET", "/api/v0/logs/stream", params=params, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response, operation, what)
                started = True
                received = False
                async for chunk in response.aiter_bytes():
                    received = received or bool(chunk)
                    for line in splitter.feed(chunk):
                        yield line
            if not received:
                await self._check_listed(node_id, filename, operation, what)
        except httpx.TransportError as exc:
            if not started:
                raise self._unreachable(exc, operation, what) from None
            rest = splitter.flush()
            if rest is not None:
                yield rest
            raise RayLogStreamLost(
                f"The log stream of {filename} on node {node_id[:12]} was cut "
                f"({self._scrub(_reason(exc))}): the node, its dashboard agent or the head "
                "stopped",
                url=self.base_url,
                operation=operation,
            ) from None
        rest = splitter.flush()
        if rest is not None:
            yield rest

    # -- head ------------------------------------------------------------------------------

    async def health(self) -> HeadHealth:
        """The GCS health as the dashboard sees it (public: no token needed).

        Raises `RayDashboardUnreachable` when the dashboard itself does not answer.
        """
        operation = "GET /api/gcs_healthz"
        try:
            response = await self._http.get("/api/gcs_healthz")
        except httpx.TransportError as exc:
            raise self._unreachable(exc, operation, "checking the head's health") from None
        text = self._scrub(response.content.decode("utf-8", errors="replace").strip())
        if response.status_code == 200:
            return HeadHealth(True, text or "success")
        return HeadHealth(False, f"HTTP {response.status_code}: {text[:300]}")

    async def version(self) -> RayVersion:
        payload = await self._get_json("/api/version", None, "reading the Ray version")

        def parse(data: Any) -> RayVersion:
            return RayVersion(
                ray_version=str(data["ray_version"]),
                ray_commit=str(data.get("ray_commit", "")),
                session_name=str(data.get("session_name", "")),
            )

        return self._parsed("GET /api/version", parse, payload)

    async def auth_mode(self) -> str:
        """ "token" or "disabled" (public: no token needed)."""
        payload = await self._get_json(
            "/api/authentication_mode", None, "reading the authentication mode"
        )
        return self._parsed(
            "GET /api/authentication_mode", lambda d: str(d["authentication_mode"]), payload
        )
