"""What a Ray 2.60 head answers (nodes, resources, jobs, Serve) and the job request it takes.

Plain frozen dataclasses built by `raycai_core.ray.parsers`; times are unix seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

GB = 2**30
SERVE_HTTP_PORT = 8000  # Serve's default proxy port (serve/_private/constants.py)

# -- nodes and resources --------------------------------------------------------------------


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


# -- jobs -----------------------------------------------------------------------------------

STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")  # Ray's own
RAY_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# raycai's, never Ray's: a job raycai submitted that a head restarted without its state no
# longer knows, last seen not finished (raycai_core.work.job_merge). It is over: terminal.
LOST = "LOST"
TERMINAL = RAY_TERMINAL | {LOST}


@dataclass(frozen=True)
class JobInfo:
    """One job: a submitted one (SUBMISSION) or a driver that connected itself (DRIVER)."""

    id: str  # the submission id, else Ray's job id
    type: str
    status: str  # PENDING|RUNNING|STOPPED|SUCCEEDED|FAILED, "UNKNOWN", or raycai's LOST
    entrypoint: str
    message: str
    error_type: str | None = None
    submission_id: str | None = None
    job_id: str | None = None
    start_time: float | None = None  # unix seconds
    end_time: float | None = None
    driver_exit_code: int | None = None
    driver_node_ip: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_submission(self) -> bool:
        return self.type == "SUBMISSION"

    def duration(self, now: float | None = None) -> float | None:
        if self.start_time is None:
            return None
        end = self.end_time or (time.time() if now is None else now)
        return max(0.0, end - self.start_time)


@dataclass(frozen=True)
class JobRequest:
    entrypoint: str
    env: dict[str, str] = field(default_factory=dict)
    working_dir_uri: str | None = None  # gcs://_ray_pkg_<hash>.zip after an upload
    cpus: float | None = None
    gpus: float | None = None
    memory_gb: float | None = None
    submission_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The `POST /api/jobs/` body (JobSubmitRequest)."""
        body: dict[str, Any] = {"entrypoint": self.entrypoint}
        runtime_env: dict[str, Any] = {}
        if self.env:
            runtime_env["env_vars"] = dict(self.env)
        if self.working_dir_uri:
            runtime_env["working_dir"] = self.working_dir_uri
        if runtime_env:
            body["runtime_env"] = runtime_env
        if self.submission_id:
            body["submission_id"] = self.submission_id
        if self.cpus is not None:
            body["entrypoint_num_cpus"] = self.cpus
        if self.gpus is not None:
            body["entrypoint_num_gpus"] = self.gpus
        if self.memory_gb is not None:
            body["entrypoint_memory"] = int(self.memory_gb * GB)
        return body


class WorkingDirPackage(Protocol):
    """A working_dir zip as Ray's package store names it (`work.packages.Package`)."""

    @property
    def name(self) -> str: ...  # _ray_pkg_<hash>.zip

    @property
    def data(self) -> bytes: ...


# -- serve ----------------------------------------------------------------------------------

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
