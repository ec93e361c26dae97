"""The workspace's persistent state (projects, applications, the API key) in state.json.

Records keep every field the API shows plus what the workspace needs to bring apps back
after a restart (desired state, restart count, the last process's pid and start time).
`to_api()` shapes a record exactly as the spec's definitions say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import json
import os
import pwd
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from raycai_core.atomic import atomic_write_bytes, read_json

SCHEMA = 1
_ID_ALPHABET = string.ascii_lowercase + string.digits

STARTING = "APPLICATION_STARTING"
RUNNING = "APPLICATION_RUNNING"
STOPPING = "APPLICATION_STOPPING"
STOPPED = "APPLICATION_STOPPED"
FAILED = "APPLICATION_FAILED"
STATUSES = ("APPLICATION_UNKNOWN", STARTING, RUNNING, STOPPING, STOPPED, FAILED)


def now_rfc3339() -> str:
    """UTC, fixed microsecond width, so that the strings sort as the times do."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """A CML-like public id: four groups of four lower-case letters and digits."""
    return "-".join("".join(secrets.choice(_ID_ALPHABET) for _ in range(4)) for _ in range(4))


def new_subdomain() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


@functools.lru_cache(maxsize=1)
def machine_shared_memory_mb() -> int:
    """What a local application's processes really get as shared memory: the size of this
    machine's /dev/shm in MB (CML reports a project's `shared_memory_limit` in MB). Without
    a /dev/shm (macOS: Ray's object store lives in /tmp there), the machine's memory."""
    try:
        stats = os.statvfs("/dev/shm")
        size = stats.f_blocks * stats.f_frsize
    except OSError:
        size = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(size // 2**20)


def local_user() -> dict[str, str]:
    username = getpass.getuser()
    try:
        name = pwd.getpwnam(username).pw_gecos.split(",")[0] or username
    except KeyError:
        name = username
    return {"username": username, "name": name, "email": f"{username}@localhost"}


@dataclass
class ProjectRecord:
    id: str
    name: str
    owner: dict[str, str]
    created_at: str
    updated_at: str
    seq: int
    description: str = ""
    visibility: str = "private"
    environment: dict[str, str] = field(default_factory=dict)
    # None: never set, the API shows what the processes get (machine_shared_memory_mb);
    # a PATCH (raycai doctor --fix, the AMP) stores its value, shown as is.
    shared_memory_limit: int | None = None
    ephemeral_storage_request: int = 0
    ephemeral_storage_limit: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": dict(self.owner),
            "creator": dict(self.owner),
            "description": self.description,
            "visibility": self.visibility,
            "default_engine_type": "ml_runtime",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "creation_status": "success",
            "permissions": {
                "read": True,
                "write": True,
                "admin": True,
                "business_user": False,
                "operator": False,
                "inherit": False,
            },
            "shared_memory_limit": (
                machine_shared_memory_mb()
                if self.shared_memory_limit is None
                else self.shared_memory_limit
            ),
            "environment": json.dumps(self.environment),
            "ephemeral_storage_request": self.ephemeral_storage_request,
            "ephemeral_storage_limit": self.ephemeral_storage_limit,
            "slug": f"{self.owner.get('username', '')}/{self.name}",
        }


@dataclass
class AppRecord:
    id: str
    project_id: str
    name: str
    subdomain: str
    script: str
    creator: dict[str, str]
    created_at: str
    updated_at: str
    seq: int
    status: str = STARTING
    description: str = ""
    starting_at: str | None = None
    running_at: str | None = None
    stopped_at: str | None = None
    kernel: str = ""
    cpu: float = 1.0
    memory: float = 1.0
    nvidia_gpu: int = 0
    bypass_authentication: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    runtime_identifier: str = ""
    runtime_addon_identifiers: list[str] = field(default_factory=list)
    run_as: int = 0
    cdv_app: bool = False
    accelerator_label_id: str = "0"
    resource_group_id: int = 0
    resource_profile_id: int = 0
    # Workspace bookkeeping, never shown by the API.
    desired: str = "running"  # "running" or "stopped"
    restarts: int = 0  # platform restarts since the last start asked for by a user
    pid: int | None = None  # the last process, to clean up after a crash of the workspace
    pid_start: int | None = None  # its start time (/proc/<pid>/stat field 22)

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "creator": dict(self.creator),
            "script": self.script,
            "subdomain": self.subdomain,
            "status": self.status,
            "created_at": self.created_at,
            "stopped_at": self.stopped_at,
            "updated_at": self.updated_at,
            "starting_at": self.starting_at,
            "running_at": self.running_at,
            "kernel": self.kernel,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpu": self.nvidia_gpu,
            "bypass_authentication": self.bypass_authentication,
            "environment": json.dumps(self.environment),
            "runtime_identifier": self.runtime_identifier,
            "runtime_addon_identifiers": list(self.runtime_addon_identifiers),
            "run_as": self.run_as,
            "cdv_app": self.cdv_app,
            "accelerator_label_id": self.accelerator_label_id,
            "resource_group_id": self.resource_group_id,
            "resource_profile_id": self.resource_profile_id,
        }
        # Unset timestamps are left out, as protobuf's JSON mapping does.
        return {key: value for key, value in body.items() if value is not None}

    def touch(self) -> None:
        self.updated_at = now_rfc3339()

    def set_status(self, status: str) -> None:
        self.status = status
        stamp = now_rfc3339()
        self.updated_at = stamp
        if status == STARTING:
            self.starting_at = stamp
        elif status == RUNNING:
            self.running_at = stamp
        elif status in (STOPPED, FAILED):
            self.stopped_at = stamp


@dataclass
class WorkspaceState:
    api_key: str
    user: dict[str, str]
    default_project_id: str
    projects: dict[str, ProjectRecord] = field(default_factory=dict)
    apps: dict[str, AppRecord] = field(default_factory=dict)
    next_seq: int = 1
    # A new workspace starts at a random place in its address and port pools: pod IPs are
    # arbitrary on CML too, and workspaces started side by side (parallel tests) rarely meet.
    ip_cursor: int = field(default_factory=lambda: secrets.randbelow(60_000))
    port_cursor: int = field(default_factory=lambda: secrets.randbelow(10_000))
    last_port: int = 0
    # Processes of deleted apps still being stopped: [pid, pid start time] pairs.
    orphans: list[list[int]] = field(default_factory=list)
    # The key the workspace gives its apps as CDSW_APIV2_KEY (CML's workload credentials):
    # accepted as the user's, but never the user's own key.
    workload_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def new(cls, project_name: str) -> WorkspaceState:
        state = cls(api_key=secrets.token_urlsafe(32), user=local_user(), default_project_id="")
        state.default_project_id = state.add_project(project_name).id
        return state

    def take_seq(self) -> int:
        self.next_seq += 1
        return self.next_seq - 1

    def add_project(self, name: str, **fields: Any) -> ProjectRecord:
        stamp = now_rfc3339()
        project = ProjectRecord(
            id=new_id(),
            name=name,
            owner=dict(self.user),
            created_at=stamp,
            updated_at=stamp,
            seq=self.take_seq(),
            **fields,
        )
        self.projects[project.id] = project
        return project

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "api_key": self.api_key,
            "user": self.user,
            "default_project_id": self.default_project_id,
            "projects": [dataclasses.asdict(p) for p in self.projects.values()],
            "apps": [dataclasses.asdict(a) for a in self.apps.values()],
            "next_seq": self.next_seq,
            "ip_cursor": self.ip_cursor,
            "port_cursor": self.port_cursor,
            "last_port": self.last_port,
            "orphans": self.orphans,
            "workload_key": self.workload_key,
            "unset_shared_memory_is_null": True,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkspaceState:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unsupported state schema {data.get('schema')!r}")
        projects = [ProjectRecord(**p) for p in data["projects"]]
        if "unset_shared_memory_is_null" not in data:  # written when 0 stood for "never set"
            for project in projects:
                if project.shared_memory_limit == 0:
                    project.shared_memory_limit = None
        apps = [AppRecord(**a) for a in data["apps"]]
        return cls(
            api_key=data["api_key"],
            user=data["user"],
            default_project_id=data["default_project_id"],
            projects={p.id: p for p in projects},
            apps={a.id: a for a in apps},
            next_seq=data["next_seq"],
            ip_cursor=data.get("ip_cursor", 0),
            port_cursor=data.get("port_cursor", 0),
            last_port=data.get("last_port", 0),
            orphans=data.get("orphans", []),
            workload_key=data.get("workload_key") or secrets.token_urlsafe(32),
        )


class StateStore:
    """state.json (0600: it holds the API key), written atomically off the event loop."""

    def __init__(self, path: Path, state: WorkspaceState) -> None:
        self.path = path
        self.state = state
        self._lock = asyncio.Lock()
        self._dirty = False
        self._pending: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, path: Path, project_name: str) -> StateStore:
        data = read_json(path)
        if data is None:
            if path.exists():
                raise RuntimeError(f"{path} is not valid JSON; move it away to start afresh")
            store = cls(path, WorkspaceState.new(project_name))
            store.write_now()
            return store
        return cls(path, WorkspaceState.from_json(data))

    def _encode(self) -> bytes:
        return (json.dumps(self.state.to_json(), indent=1, sort_keys=True) + "\n").encode()

    def write_now(self) -> None:
        atomic_write_bytes(self.path, self._encode(), mode=0o600)

    async def save(self) -> None:
        """Write the current state; returns once it is on disk."""
        async with self._lock:
            data = self._encode()
            await asyncio.to_thread(atomic_write_bytes, self.path, data, mode=0o600)

    def save_soon(self) -> None:
        """Schedule a write; changes made while one is pending coalesce into it."""
        self._dirty = True
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._dirty:
            self._dirty = False
            await self.save()

    async def flush(self) -> None:
        """Wait for pending writes, then write once more."""
        if self._pending is not None:
            await asyncio.shield(self._pending)
        await self.save()
