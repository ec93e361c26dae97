"""The head's dashboard API for running work: Ray Jobs and Ray Serve (httpx + aiohttp's
WebSocket client for the live job log; never imports ray).

Builds on `RayDashboardClient`: the same token handling (a Bearer header, never shown), the
same error family (`RayDashboardUnreachable`, `RayDashboardAuthError`, ...), plus
`JobNotFound` (404) and `ServeNotInstalled` (501: the head's Ray lacks `ray[serve]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from raycai_core.ray_dashboard import RayDashboardClient, RayDashboardError, RayLogStreamLost
from raycai_core.work.jobs import JobInfo, JobRequest, parse_job, parse_jobs
from raycai_core.work.packages import Package
from raycai_core.work.serve import ServeStatus, parse_serve


class JobNotFound(RayDashboardError):
    """The cluster has no job with that id."""


class JobRefused(RayDashboardError):
    """Ray refused the job request (400); `server_message` holds its reason."""


class ServeNotInstalled(RayDashboardError):
    """The head's Ray lacks Serve's dependencies (`ray[serve]`): the API answers 501."""


def _reason_of(body: str) -> str:
    """Ray answers many failures with a Python traceback: its last line is the reason."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)[:500]


class RayWorkClient(RayDashboardClient):
    """Jobs and Serve on one cluster's dashboard (`async with RayWorkClient(url, token)`)."""

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        operation = f"{method} {path}"
        try:
            response = await self._http.request(method, path, json=json, content=content)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, operation, what) from None
        if response.status_code in ok:
            return response
        body = self._scrub(response.content.decode("utf-8", errors="replace"))
        reason = _reason_of(body)
        status = response.status_code
        common = {"url": self.base_url, "operation": operation, "status": status}
        if status == 404 and "/api/jobs/" in path:
            raise JobNotFound(
                f"{reason or 'no such job'} (on {self.base_url})", server_message=reason, **common
            )
        if status == 400:
            raise JobRefused(f"Ray refused {what}: {reason}", server_message=reason, **common)
        if status >= 500 and reason and "Server got itself in trouble" not in body:
            error = self._status_error(response, operation, what)
            error.args = (f"Ray dashboard error while {what} (HTTP {status}): {reason}",)
            error.server_message = reason
            raise error
        raise self._status_error(response, operation, what)

    async def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(f"{method} {path}", "the answer is not JSON") from None

    # -- jobs ------------------------------------------------------------------------------

    async def list_jobs(self) -> list[JobInfo]:
        """Every job Ray knows (submitted ones and drivers), newest first. One request."""
        payload = await self._json("GET", "/api/jobs/", "listing the jobs")
        return self._parsed("GET /api/jobs/", parse_jobs, payload)

    async def job(self, job_id: str) -> JobInfo:
        path = f"/api/jobs/{job_id}"
        payload = await self._json("GET", path, f"reading job {job_id}")
        return self._parsed(f"GET {path}", parse_job, payload)

    async def submit_job(self, request: JobRequest) -> str:
        """Submits; returns the submission id."""
        payload = await self._json("POST", "/api/jobs/", "submitting the job", json=request.body())

        def parse(data: Any) -> str:
            return str(data.get("submission_id") or data["job_id"])

        return self._parsed("POST /api/jobs/", parse, payload)

    async def stop_job(self, job_id: str) -> bool:
        """Asks Ray to stop the job; False when it had already ended."""
        path = f"/api/jobs/{job_id}/stop"
        payload = await self._json("POST", path, f"stopping job {job_id}")
        return self._parsed(f"POST {path}", lambda data: bool(data["stopped"]), payload)

    async def job_logs(self, job_id: str) -> str:
        """The job's whole log so far (its driver's stdout and stderr)."""
        path = f"/api/jobs/{job_id}/logs"
        payload = await self._json("GET", path, f"reading the logs of job {job_id}")
        return self._parsed(f"GET {path}", lambda data: str(data["logs"] or ""), payload)

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

    # -- working_dir packages --------------------------------------------------------------

    async def ensure_package(self, package: Package) -> bool:
        """Uploads the package unless the cluster has it; True when it was uploaded."""
        path = f"/api/packages/gcs/{package.name}"
        response = await self._call("GET", path, "checking the working_dir", ok=(200, 404))
        if response.status_code == 200:
            return False
        await self._call("PUT", path, "uploading the working_dir", content=package.data)
        return True

    # -- serve -----------------------------------------------------------------------------

    async def serve_status(self) -> ServeStatus:
        path = "/api/serve/applications/"
        response = await self._call("GET", path, "reading Serve's state", ok=(200, 501))
        if response.status_code == 501:
            raise ServeNotInstalled(
                "the head lacks ray[serve] (its Ray has no Serve web dependencies): run "
                "`raycai setup-env` (installs ray[default,serve]) and restart the head",
                url=self.base_url,
                operation=f"GET {path}",
                status=501,
            )
        try:
            payload = response.json()
        except ValueError:
            raise self._unexpected(f"GET {path}", "the answer is not JSON") from None
        return self._parsed(f"GET {path}", parse_serve, payload)
