"""One async client for everything raycai asks of a Ray 2.60 head's dashboard (httpx, and
aiohttp's WebSocket client for a job's live log; never imports ray).

Nodes (`/api/v0/nodes`, real time), used vs total resources and pending demand
(`/api/cluster_status`, lags a few seconds), log files per node (list, tail, follow), Ray
Jobs (list, read, submit, stop, logs, follow; working_dir package upload) and Serve's state.

With Ray token authentication the client sends `Authorization: Bearer <token>`; the token is
kept as a `Secret` and no repr, log line or error message contains it. Every call goes
through one request path and one status -> error mapping (`raycai_core.ray.errors`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from glob import escape as glob_escape
from typing import Any, TypeVar

import httpx

from raycai_core.credentials import Secret
from raycai_core.ray.errors import (
    JobNotFound,
    JobRefused,
    RayDashboardAuthError,
    RayDashboardError,
    RayDashboardServerError,
    RayDashboardUnreachable,
    RayLogStreamLost,
    ServeNotInstalled,
    UnexpectedAnswer,
)
from raycai_core.ray.models import (
    ClusterUsage,
    JobInfo,
    JobRequest,
    RayNode,
    ServeStatus,
    WorkingDirPackage,
)
from raycai_core.ray.parsers import (
    LineSplitter,
    parse_cluster_usage,
    parse_job,
    parse_jobs,
    parse_log_listing,
    parse_nodes,
    parse_serve,
)
from raycai_core.tls import tls_context

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
SERVE_DEPLOY_TIMEOUT_S = 120.0  # a deploy or a shutdown of Serve answers when done
NODE_LIST_LIMIT = 1000

# Ray's own text for the two token refusals (dashboard/http_server_head.py, 2.60).
_RAY_MISSING_TOKEN = "Missing authentication token"
_RAY_INVALID_TOKEN = "Invalid authentication token"
# aiohttp's generic page when a handler raised: it says nothing, so the client says what failed.
_AIOHTTP_TROUBLE = "Server got itself in trouble"
# The APIs for running work: a 400 there is Ray refusing the request.
_WORK_PATHS = ("/api/jobs/", "/api/packages/", "/api/serve/")


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


def reason_of(body: str) -> str:
    """Ray answers many failures with a Python traceback: its last line is the reason."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)[:500]


class RayClient:
    """One Ray head's dashboard. Use as `async with RayClient(url, token=...) as ray: ...`."""

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
            verify=tls_context(),
        )

    def __repr__(self) -> str:
        token = "set" if self._token else "none"
        return f"RayClient(base_url={self.base_url!r}, token=<{token}>)"

    async def __aenter__(self) -> RayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one request and error path ------------------------------------------------------

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
        path = operation.partition(" ")[2]
        body = self._scrub(response.content.decode("utf-8", errors="replace").strip())
        server_message = "" if _AIOHTTP_TROUBLE in body else reason_of(body)
        doing = f" while {what}" if what else ""
        where = f"The Ray dashboard at {self.base_url}"
        common: dict[str, Any] = {"url": self.base_url, "operation": operation, "status": status}
        cls: type[RayDashboardError] = RayDashboardError
        if status == 404 and path.startswith("/api/jobs/"):
            message = f"{server_message or 'no such job'} (on {self.base_url})"
            return JobNotFound(message, server_message=server_message, **common)
        if status == 400 and path.startswith(_WORK_PATHS):
            message = f"Ray refused the Serve config: {server_message}"
            return JobRefused(message, server_message=server_message, **common)
        if status == 501 and path.startswith("/api/serve/"):
            message = (
                "the head lacks ray[serve] (its Ray has no Serve web dependencies): run "
                "`raycai setup-env` (installs ray[default,serve]) and restart the head"
            )
            return ServeNotInstalled(message, server_message=server_message, **common)
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
            location = response.headers.get("location", "?")
            message = (
                f"{where} redirected {operation} to {location}: the URL does not seem to be "
                "a Ray dashboard (a login page in front of it?)"
            )
        else:
            message = f"Ray dashboard answered HTTP {status}{doing}: {server_message}"
        if "doesn't exist" in body and "Agent for node" in body:
            message += " (the node is dead or unknown; a dead node's logs are gone)"
        elif what.startswith("listing the logs") and not server_message:
            message += " (is the node dead? a dead node's logs are gone)"
        return cls(message, server_message=server_message, **common)

    def _unexpected(self, operation: str, detail: str) -> RayDashboardError:
        return RayDashboardError(
            f"Unexpected answer from {self.base_url} to {operation} ({detail}); "
            "is this a Ray 2.60 dashboard?",
            url=self.base_url,
            operation=operation,
            status=200,
        )

    def _parsed(self, operation: str, parse: Callable[[Any], T], payload: Any) -> T:
        try:
            return parse(payload)
        except (UnexpectedAnswer, LookupError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected(operation, self._scrub(str(exc))) from None

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """The response when its status is in `ok`; every failure mapped to the family."""
        operation = f"{method} {path}"
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                json=json,
                content=content,
                timeout=timeout or self._timeout,
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc, operation, what) from None
        if response.status_code not in ok:
            raise self._status_error(response, operation, what)
        return response

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        parse: Callable[[Any], T],
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> T:
        """A JSON call: its answer parsed by `parse` (a shape error is `RayDashboardError`)."""
        response = await self._request(method, path, what, params=params, json=json)
        try:
            payload = response.json()
        except ValueError:
            raise self._unexpected(f"{method} {path}", "the answer is not JSON") from None
        return self._parsed(f"{method} {path}", parse, payload)

    # -- nodes and resources ---------------------------------------------------------------

    async def nodes(
        self, *, alive_only: bool = False, limit: int = NODE_LIST_LIMIT
    ) -> list[RayNode]:
        """Every node the GCS knows (dead ones stay listed), head first, with labels and
        start times (`detail=true`)."""
        params: dict[str, Any] = {"limit": limit, "detail": "true"}
        if alive_only:
            params.update(filter_keys="state", filter_predicates="=", filter_values="ALIVE")
        return await self._call(
            "GET", "/api/v0/nodes", "listing the nodes", parse_nodes, params=params
        )

    async def cluster_usage(self) -> ClusterUsage:
        """Used vs total resources, per node too, and pending demand (lags 2-8 s)."""
        return await self._call(
            "GET", "/api/cluster_status", "reading the cluster status", parse_cluster_usage
        )

    # -- logs ------------------------------------------------------------------------------

    async def list_logs(self, node_id: str, glob: str | None = None) -> dict[str, list[str]]:
        """Log files of a live node by category (raylet, worker_out, ...); `glob` filters."""
        params = {"node_id": node_id}
        if glob:
            params["glob"] = glob
        what = f"listing the logs of node {node_id[:12]}"
        return await self._call("GET", "/api/v0/logs", what, parse_log_listing, params=params)

    async def tail_log(self, node_id: str, filename: str, lines: int = 100) -> str:
        """The last `lines` lines of a node's log file (Ray reads 0 as 1000, -1 as all)."""
        params = {"node_id": node_id, "filename": filename, "lines": lines}
        what = f"reading {filename} of node {node_id[:12]}"
        response = await self._request("GET", "/api/v0/logs/file", what, params=params)
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

    # -- jobs ------------------------------------------------------------------------------

    async def list_jobs(self) -> list[JobInfo]:
        """Every job Ray knows (submitted ones and drivers), newest first. One request."""
        return await self._call("GET", "/api/jobs/", "listing the jobs", parse_jobs)

    async def job(self, job_id: str) -> JobInfo:
        return await self._call("GET", f"/api/jobs/{job_id}", f"reading job {job_id}", parse_job)

    async def submit_job(self, request: JobRequest) -> str:
        """Submits; returns the submission id."""

        def parse(data: Any) -> str:
            return str(data.get("submission_id") or data["job_id"])

        return await self._call(
            "POST", "/api/jobs/", "submitting the job", parse, json=request.body()
        )

    async def stop_job(self, job_id: str) -> bool:
        """Asks Ray to stop the job; False when it had already ended."""
        return await self._call(
            "POST",
            f"/api/jobs/{job_id}/stop",
            f"stopping job {job_id}",
            lambda data: bool(data["stopped"]),
        )

    async def job_logs(self, job_id: str) -> str:
        """The job's whole log so far (its driver's stdout and stderr)."""
        return await self._call(
            "GET",
            f"/api/jobs/{job_id}/logs",
            f"reading the logs of job {job_id}",
            lambda data: str(data["logs"] or ""),
        )

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's log from its start, chunk by chunk as written, until the job ends.

        Ray streams it over a WebSocket that it closes when the job is over.
        """
        import aiohttp

        path = f"/api/jobs/{job_id}/logs/tail"
        operation = f"GET {path}"
        what = f"following the logs of job {job_id}"
        url = self.base_url.replace("http", "ws", 1) + path
        # Only these: httpx's Connection/Accept headers would spoil the WebSocket upgrade.
        headers = {
            k: v for k, v in self._http.headers.items() if k in ("user-agent", "authorization")
        }
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
        connect = aiohttp.ClientTimeout(sock_connect=self._timeout.connect or 5.0)
        started = False
        try:
            async with (
                aiohttp.ClientSession(timeout=connect) as session,
                session.ws_connect(url, headers=headers, timeout=timeout, heartbeat=30) as ws,
            ):
                started = True
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        yield str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        yield bytes(message.data).decode("utf-8", errors="replace")
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        raise RayLogStreamLost(
                            f"The log stream of job {job_id} was cut: {ws.exception()}",
                            url=self.base_url,
                            operation=operation,
                        )
        except aiohttp.WSServerHandshakeError as exc:
            # Not upgraded: 401/403/404 and the like; ask again over HTTP for Ray's reason.
            await self.job(job_id)
            raise RayDashboardError(
                f"The Ray dashboard at {self.base_url} refused to stream the logs of job "
                f"{job_id} (HTTP {exc.status})",
                url=self.base_url,
                operation=operation,
                status=exc.status,
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if not started:
                transport = httpx.ConnectError(str(exc) or type(exc).__name__)
                transport.__cause__ = exc
                raise self._unreachable(transport, operation, what) from None
            raise RayLogStreamLost(
                f"The log stream of job {job_id} was cut ({exc or type(exc).__name__}): "
                "the head stopped?",
                url=self.base_url,
                operation=operation,
            ) from None

    async def ensure_package(self, package: WorkingDirPackage) -> bool:
        """Uploads a working_dir package unless the cluster has it; True when uploaded."""
        path = f"/api/packages/gcs/{package.name}"
        response = await self._request("GET", path, "checking the working_dir", ok=(200, 404))
        if response.status_code == 200:
            return False
        await self._request("PUT", path, "uploading the working_dir", content=package.data)
        return True

    # -- serve -----------------------------------------------------------------------------

    async def serve_status(self) -> ServeStatus:
        """Serve's applications; `ServeNotInstalled` when the head's Ray lacks ray[serve]."""
        return await self._call(
            "GET", "/api/serve/applications/", "reading Serve's state", parse_serve
        )

    async def deploy_serve(self, config: dict[str, Any]) -> None:
        """PUTs the whole declarative Serve config: every application not in it is deleted.

        Ray checks the config before it answers: a refusal is `JobRefused` with Ray's whole
        text (pydantic's lines, unjoined), and nothing running changed. An application that
        fails to build shows up later as DEPLOY_FAILED in `serve_status()`.
        """
        path = "/api/serve/applications/"
        what = "deploying the Serve config"
        # Ray answers once the controller took the config: the first deploy starts Serve
        # (its controller and proxy), which takes tens of seconds on a busy head.
        timeout = httpx.Timeout(SERVE_DEPLOY_TIMEOUT_S, connect=self._timeout.connect)
        response = await self._request(
            "PUT", path, what, json=config, ok=(200, 400), timeout=timeout
        )
        if response.status_code == 400:
            text = self._scrub(response.content.decode("utf-8", errors="replace").strip())
            raise JobRefused(
                f"Ray refused the Serve config:\n{text or '(no reason given)'}",
                url=self.base_url,
                operation=f"PUT {path}",
                status=400,
                server_message=text,
            )

    async def delete_serve(self) -> None:
        """Shuts Serve down: every application, the controller and the proxies."""
        timeout = httpx.Timeout(SERVE_DEPLOY_TIMEOUT_S, connect=self._timeout.connect)
        await self._request(
            "DELETE", "/api/serve/applications/", "shutting Serve down", timeout=timeout
        )
