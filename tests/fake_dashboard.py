"""A stand-in Ray 2.60 dashboard (aiohttp) for the Jobs and Serve APIs, with faults.

It answers with Ray's JSON shapes (recorded from Ray 2.60.0) and can be told to answer a
path badly: `dash.faults["/api/jobs/"] = 503` (a status), `"junk"` (not the right JSON),
`"partial"` (objects with most fields missing). Token auth as Ray does it: 401 without a
token, 403 with a wrong one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "fake-token-0123456789"
FAULT = web.RequestKey("fault", object)

SERVE_EMPTY = {"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": None}


def job(submission_id: str, status: str, entrypoint: str, **more: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    record = {
        "type": "SUBMISSION",
        "job_id": None,
        "submission_id": submission_id,
        "driver_info": None,
        "status": status,
        "entrypoint": entrypoint,
        "message": {
            "SUCCEEDED": "Job finished successfully.",
            "RUNNING": "Job is currently running.",
            "PENDING": "Job has not started yet.",
            "STOPPED": "Job was intentionally stopped.",
            "FAILED": "Job entrypoint command failed with exit code 3",
        }[status],
        "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR" if status == "FAILED" else None,
        "start_time": now_ms - 65_000,
        "end_time": None if status in ("RUNNING", "PENDING") else now_ms - 5_000,
        "metadata": None,
        "runtime_env": None,
        "driver_agent_http_address": "http://127.0.0.2:50791",
        "driver_node_id": "eaa2378f02a77a35a0f76a70582e88de1830eda5b3f0788003f9ec4a",
        "driver_exit_code": 3 if status == "FAILED" else (0 if status == "SUCCEEDED" else None),
    }
    record.update(more)
    return record


def serve_running(replicas: int = 2, status: str = "RUNNING") -> dict[str, Any]:
    replica = {
        "node_id": "eaa2378f",
        "node_ip": "127.0.0.2",
        "actor_name": "SERVE_REPLICA::hello#Hello#p73319n6",
        "replica_id": "p73319n6",
        "state": "RUNNING",
        "pid": 994,
        "start_time_s": time.time() - 30,
    }
    deployment_status = "HEALTHY" if status == "RUNNING" else "UNHEALTHY"
    return {
        "controller_info": {"node_id": "eaa2378f", "actor_name": "SERVE_CONTROLLER_ACTOR"},
        "proxy_location": "EveryNode",
        "http_options": {},
        "proxies": {},
        "applications": {
            "hello": {
                "name": "hello",
                "route_prefix": "/hello",
                "status": status,
                "message": "" if status == "RUNNING" else "Deployment 'Hello' is unhealthy.",
                "last_deployed_time_s": time.time() - 40,
                "source": "imperative",
                "deployments": {
                    "Hello": {
                        "name": "Hello",
                        "status": deployment_status,
                        "status_trigger": "CONFIG_UPDATE_COMPLETED",
                        "message": "" if status == "RUNNING" else "replica died: ValueError",
                        "target_num_replicas": replicas,
                        "replicas": [dict(replica, replica_id=f"r{i}") for i in range(replicas)],
                    }
                },
            }
        },
        "target_capacity": None,
    }


def serve_config_problems(body: Any) -> list[str]:
    """pydantic-like lines for what Ray's ServeDeploySchema would refuse (a few rules)."""
    if not isinstance(body, dict) or not isinstance(body.get("applications"), list):
        return ["applications\n  Field required [type=missing, input_type=dict]"]
    problems = []
    for index, app in enumerate(body["applications"]):
        if not isinstance(app, dict) or not isinstance(app.get("import_path"), str):
            problems.append(
                f"applications.{index}.import_path\n  Field required [type=missing, "
                f"input_value={app!r}, input_type=dict]\n    For further information visit "
                "https://errors.pydantic.dev/2.11/v/missing"
            )
            continue
        route = app.get("route_prefix", "/")
        if route is not None and not str(route).startswith("/"):
            problems.append(
                f'applications.{index}.route_prefix\n  Value error, Got "{route}" for '
                'route_prefix. Route prefix must start with "/".'
            )
        env = app.get("runtime_env") or {}
        for uri in [env.get("working_dir"), *(env.get("py_modules") or [])]:
            if isinstance(uri, str) and "://" not in uri:
                problems.append(
                    f"applications.{index}.runtime_env\n  Value error, runtime_envs in the "
                    "Serve config support only remote URIs in working_dir and py_modules, or "
                    '"local://" URIs for directories that already exist on every node. Got '
                    f"error when parsing URI: Expected URI but received path {uri}"
                )
    return problems


def serve_from_config(body: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    apps = {}
    for app in body["applications"]:
        name = app.get("name") or "default"
        failed = app["import_path"].startswith("fail:")
        deployment = {
            "name": "Model",
            "status": "DEPLOY_FAILED" if failed else "HEALTHY",
            "message": "",
            "target_num_replicas": 1,
            "replicas": [] if failed else [{"replica_id": f"{name}-r0", "state": "RUNNING"}],
        }
        apps[name] = {
            "name": name,
            "route_prefix": app.get("route_prefix", "/"),
            "status": "DEPLOY_FAILED" if failed else "RUNNING",
            "message": f"ModuleNotFoundError: No module named '{name}_missing'" if failed else "",
            "last_deployed_time_s": now,
            "deployments": {} if failed else {"Model": deployment},
        }
    return {
        "controller_info": {"node_id": "eaa2378f"},
        "proxy_location": body.get("proxy_location", "EveryNode"),
        "http_options": body.get("http_options", {}),
        "proxies": {},
        "applications": apps,
        "target_capacity": None,
    }


@dataclass
class FakeDashboard:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    serve: dict[str, Any] | None = field(default_factory=lambda: copy.deepcopy(SERVE_EMPTY))
    packages: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)  # path -> status | "junk" | "partial"
    requests: list[tuple[str, str]] = field(default_factory=list)
    delay_s: float = 0.0  # every answer this late (a slow dashboard)
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests answered at once
    submitted: list[dict[str, Any]] = field(default_factory=list)
    serve_configs: list[Any] = field(default_factory=list)  # every accepted Serve PUT body
    url: str = ""

    # -- plumbing --------------------------------------------------------------------------

    def _fault(self, request: web.Request) -> web.Response | str | None:
        fault = self.faults.get(request.path)
        if isinstance(fault, int):
            text = "Traceback (most recent call last):\n  ...\nRuntimeError: GCS unavailable"
            return web.Response(status=fault, text=text)
        return fault

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        auth = request.headers.get("Authorization", "")
        if not auth:
            return web.Response(status=401, text="Unauthorized: Missing authentication token")
        if auth != f"Bearer {TOKEN}":
            return web.Response(status=403, text="Forbidden: Invalid authentication token")
        fault = self._fault(request)
        if isinstance(fault, web.Response):
            return fault
        request[FAULT] = fault
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return await handler(request)
        finally:
            self.in_flight -= 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/jobs/", self.list_jobs)
        app.router.add_post("/api/jobs/", self.submit)
        app.router.add_get("/api/jobs/{id}", self.get_job)
        app.router.add_get("/api/jobs/{id}/logs", self.get_logs)
        app.router.add_get("/api/jobs/{id}/logs/tail", self.tail_logs)
        app.router.add_post("/api/jobs/{id}/stop", self.stop)
        app.router.add_get("/api/serve/applications/", self.get_serve)
        app.router.add_put("/api/serve/applications/", self.put_serve)
        app.router.add_delete("/api/serve/applications/", self.delete_serve)
        app.router.add_get("/api/packages/{protocol}/{name}", self.get_package)
        app.router.add_put("/api/packages/{protocol}/{name}", self.put_package)
        return app

    # -- jobs ------------------------------------------------------------------------------

    async def list_jobs(self, request: web.Request) -> web.Response:
        if request[FAULT] == "junk":
            return web.json_response({"jobs": "not a list"})
        if request[FAULT] == "partial":
            return web.json_response([{"submission_id": i} for i in self.jobs] + ["junk", 3])
        return web.json_response(list(self.jobs.values()))

    async def get_job(self, request: web.Request) -> web.Response:
        record = self.jobs.get(request.match_info["id"])
        if record is None:
            return web.Response(status=404, text=f"Job {request.match_info['id']} does not exist")
        return web.json_response(record)

    async def submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("entrypoint"), str):
            return web.Response(
                status=400, text="Traceback ...\nTypeError: entrypoint must be a string"
            )
        self.submitted.append(body)
        job_id = body.get("submission_id") or f"raysubmit_{len(self.jobs) + 1:04d}"
        self.jobs[job_id] = job(job_id, "PENDING", body["entrypoint"])
        return web.json_response({"job_id": job_id, "submission_id": job_id})

    async def get_logs(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        if job_id not in self.jobs:
            return web.Response(status=404, text=f"Job {job_id} does not exist")
        return web.json_response({"logs": self.logs.get(job_id, "")})

    async def tail_logs(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["id"]
        if job_id not in self.jobs:
            return web.Response(status=404, text=f"Job {job_id} does not exist")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        text = self.logs.get(job_id, "")
        for start in range(0, len(text), 7):  # chunks that split lines, as Ray's may
            await ws.send_str(text[start : start + 7])
        await ws.close()
        return ws

    async def stop(self, request: web.Request) -> web.Response:
        record = self.jobs.get(request.match_info["id"])
        if record is None:
            return web.Response(status=404, text=f"Job {request.match_info['id']} does not exist")
        running = record["status"] in ("PENDING", "RUNNING")
        if running:
            record.update(status="STOPPED", message="Job was intentionally stopped.")
        return web.json_response({"stopped": running})

    # -- serve and packages ----------------------------------------------------------------

    async def get_serve(self, request: web.Request) -> web.Response:
        if self.serve is None:  # Ray without ray[serve]
            return web.Response(status=501, text="Serve dependencies are not installed.")
        if request[FAULT] == "junk":
            return web.Response(text=json.dumps(["not", "an", "object"]))
        if request[FAULT] == "partial":
            return web.json_response({"applications": {"hello": {"deployments": {"D": {}}}}})
        return web.json_response(self.serve)

    async def put_serve(self, request: web.Request) -> web.Response:
        """Ray's checks, in short: pydantic's text on a bad body (400, nothing changes); an
        application whose import_path starts with `fail:` goes DEPLOY_FAILED, like a
        module that does not import; the others RUNNING with one deployment each."""
        body = await request.json()
        problems = serve_config_problems(body)
        if problems:
            text = f"{len(problems)} validation error(s) for ServeDeploySchema\n" + "\n".join(
                problems
            )
            return web.Response(status=400, text=text)
        self.serve_configs.append(body)
        self.serve = serve_from_config(body)
        return web.Response()

    async def delete_serve(self, request: web.Request) -> web.Response:
        self.serve = copy.deepcopy(SERVE_EMPTY)
        return web.Response()

    async def get_package(self, request: web.Request) -> web.Response:
        if request.match_info["name"] in self.packages:
            return web.Response()
        return web.Response(status=404, text="Package does not exist")

    async def put_package(self, request: web.Request) -> web.Response:
        self.packages[request.match_info["name"]] = await request.read()
        return web.Response()


@asynccontextmanager
async def running_dashboard(dash: FakeDashboard | None = None) -> AsyncIterator[FakeDashboard]:
    dash = dash or FakeDashboard()
    runner = web.AppRunner(dash.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dash.url = f"http://127.0.0.1:{port}"
    try:
        yield dash
    finally:
        await runner.cleanup()
