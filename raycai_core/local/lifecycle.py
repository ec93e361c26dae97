"""Applications as CML runs them: quota, scheduling delay, start, readiness, failure,
platform restarts, stop and delete. One `Supervisor` per workspace, on its event loop.

Status moves as on CML: STARTING (queued for quota, scheduled, then spawned) -> RUNNING
once the app answers HTTP on 127.0.0.1:$CDSW_APP_PORT; FAILED when its process exits
unasked, then STARTING again after `restart_delay_s`, at most `restart_attempts` times
(the count resets once the app has been RUNNING for `restart_reset_s`); STOPPING -> STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp

from raycai_core.local.addresses import AddressPool
from raycai_core.local.config import WorkspaceConfig
from raycai_core.local.processes import (
    base_environment,
    kill_session,
    proc_stat,
    spawn,
    stop_process,
)
from raycai_core.local.state import (
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    AppRecord,
    StateStore,
    now_rfc3339,
)

log = logging.getLogger(__name__)

Need = tuple[float, float, int]


class Quota:
    """CPU/memory/GPU held by apps; apps that do not fit wait first come, first served."""

    def __init__(self, limits: Callable[[], tuple[float | None, float | None, int | None]]):
        self._limits = limits
        self._holding: dict[str, Need] = {}
        self._queue: list[str] = []
        self._changed = asyncio.Event()

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _fits(self, need: Need) -> bool:
        for index, limit in enumerate(self._limits()):
            used = sum(held[index] for held in self._holding.values())
            if limit is not None and used + need[index] > limit + 1e-9:
                return False
        return True

    async def acquire(self, app_id: str, need: Need) -> None:
        self._queue.append(app_id)
        try:
            while not (self._queue[0] == app_id and self._fits(need)):
                await self._changed.wait()
            self._holding[app_id] = need
        finally:
            self._queue.remove(app_id)
            self.wake()

    def release(self, app_id: str) -> None:
        if self._holding.pop(app_id, None) is not None:
            self.wake()

    def waiting(self, app_id: str) -> bool:
        return app_id in self._queue

    def used(self) -> dict[str, float]:
        held = list(self._holding.values())
        return {
            "cpu": sum(h[0] for h in held),
            "memory": sum(h[1] for h in held),
            "nvidia_gpu": sum(h[2] for h in held),
        }


@dataclass
class AppRuntime:
    """What the workspace knows about an app's current incarnation (not persisted)."""

    app_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    spawning: asyncio.Task[asyncio.subprocess.Process] | None = None
    proc: asyncio.subprocess.Process | None = None
    ip: str | None = None
    app_port: int | None = None
    readonly_port: int | None = None
    phase: str = "idle"
    starts: int = 0
    running_since: float | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(
        self,
        store: StateStore,
        config: Callable[[], WorkspaceConfig],
        data_dir: Path,
        project_dir: Callable[[str], Path],
        platform_env: Callable[[AppRecord], dict[str, str]],
    ) -> None:
        self.store = store
        self._config = config
        self.data_dir = data_dir
        self._project_dir = project_dir
        self._platform_env = platform_env
        state = store.state
        self.pool = AddressPool(config().app_port_range, state.ip_cursor, state.port_cursor)
        self.quota = Quota(lambda: (config().quota_cpu, config().quota_memory, config().quota_gpu))
        self._runtimes: dict[str, AppRuntime] = {}
        self._ops: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._base_env = base_environment()

    def runtime(self, app_id: str) -> AppRuntime:
        if app_id not in self._runtimes:
            self._runtimes[app_id] = AppRuntime(app_id)
        return self._runtimes[app_id]

    def log_path(self, app_id: str) -> Path:
        return self.data_dir / "apps" / app_id / "output.log"

    # -- requests from the API (return at once; the work goes on in the background) ----

    def launch(self, app: AppRecord, *, reset_restarts: bool = True) -> None:
        """Start an app that has no process (new, stopped, failed or restored)."""
        rt = self.runtime(app.id)
        app.desired = "running"
        if reset_restarts:
            app.restarts = 0
        app.set_status(STARTING)
        rt.phase = "queued"
        rt.task = asyncio.get_running_loop().create_task(self._run(app))
        self.store.save_soon()

    def request_stop(self, app: AppRecord) -> None:
        app.desired = "stopped"
        rt = self.runtime(app.id)
        if rt.alive() or rt.spawning is not None:
            app.set_status(STOPPING)
        elif app.status != STOPPED:
            app.set_status(STOPPED)
        self.store.save_soon()
        self._background(self._stop(app))

    def request_restart(self, app: AppRecord) -> None:
        rt = self.runtime(app.id)
        app.desired = "running"
        app.set_status(STOPPING if rt.alive() else STARTING)
        self.store.save_soon()
        self._background(self._restart(app))

    def request_delete(self, app: AppRecord) -> None:
        """The app is already gone from the state; its processes are stopped in the background."""
        app.desired = "stopped"
        orphan = [app.pid, app.pid_start] if app.pid and app.pid_start else None
        if orphan:
            self.store.state.orphans.append(orphan)
        self._background(self._delete(app, orphan))

    # -- background work -----------------------------------------------------------------

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)

    async def wait_background(self) -> None:
        """Wait for the stops, restarts and deletes under way."""
        while self._ops:
            await asyncio.gather(*list(self._ops), return_exceptions=True)

    async def _stop(self, app: AppRecord) -> None:
        rt = self.runtime(app.id)
        async with rt.lock:
            await self._halt(app, rt)
            if app.desired == "stopped" and app.status != STOPPED:
                app.set_status(STOPPED)
            self.store.save_soon()

    async def _restart(self, app: AppRecord) -> None:
        rt = self.runtime(app.id)
        async with rt.lock:
            await self._halt(app, rt)
            if app.desired == "running" and app.id in self.store.state.apps:
                self.launch(app)

    async def _delete(self, app: AppRecord, orphan: list[int] | None) -> None:
        rt = self.runtime(app.id)
        async with rt.lock:
            await self._halt(app, rt)
        self._runtimes.pop(app.id, None)
        if orphan in self.store.state.orphans:
            self.store.state.orphans.remove(orphan)
        self.store.save_soon()

    async def _halt(self, app: AppRecord, rt: AppRuntime) -> None:
        """Stop the runner and the app's processes; release what it holds."""
        task, rt.task = rt.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if rt.spawning is not None:
            # Cancelled while spawning: the process may exist; take it over to stop it.
            results = await asyncio.gather(rt.spawning, return_exceptions=True)
            rt.spawning = None
            if isinstance(results[0], asyncio.subprocess.Process):
                rt.proc = results[0]
        if rt.alive():
            if app.status != STOPPING and app.id in self.store.state.apps:
                app.set_status(STOPPING)
                self.store.save_soon()
            rt.phase = "stopping"
        if rt.proc is not None:
            await stop_process(rt.proc, self._config().stop_grace_s)
        self._release(rt)
        rt.phase = "stopped"

    def _release(self, rt: AppRuntime) -> None:
        self.pool.release(rt.ip, rt.app_port, rt.readonly_port)
        self.quota.release(rt.app_id)
        rt.proc = rt.ip = rt.app_port = rt.readonly_port = rt.running_since = None

    # -- the runner: one per started app, until it is stopped or gives up -----------------

    async def _run(self, app: AppRecord) -> None:
        rt = self.runtime(app.id)
        while True:
            rt.phase = "queued"
            await self.quota.acquire(app.id, (app.cpu, app.memory, app.nvidia_gpu))
            delay = self._config().start_delay_s
            if delay > 0:
                rt.phase = "scheduling"
                await asyncio.sleep(delay)
            returncode = await self._run_once(app, rt)
            app.set_status(FAILED)
            self.store.save_soon()
            log.info("app %s exited with %s", app.id, returncode)
            if rt.proc is not None:
                await kill_session(rt.proc.pid)
            ran = time.monotonic() - rt.running_since if rt.running_since else 0.0
            self._release(rt)
            config = self._config()
            if ran >= config.restart_reset_s:
                app.restarts = 0
            if app.restarts >= config.restart_attempts:
                rt.phase = "failed"
                self.store.save_soon()
                return
            app.restarts += 1
            rt.phase = "restart-wait"
            self.store.save_soon()
            await asyncio.sleep(config.restart_delay_s)
            app.set_status(STARTING)
            self.store.save_soon()

    async def _run_once(self, app: AppRecord, rt: AppRuntime) -> int:
        """Spawn the app, mark it RUNNING once it answers HTTP; returns its exit code
        (127 when it could not be spawned at all)."""
        rt.ip = self.pool.take_ip()
        rt.app_port = self.pool.take_port()
        rt.readonly_port = self.pool.take_port()
        state = self.store.state
        state.ip_cursor, state.port_cursor = self.pool.ip_cursor, self.pool.port_cursor
        env = dict(self._base_env)
        env.update(self._platform_env(app))
        env.update(
            {
                "CDSW_IP_ADDRESS": rt.ip,
                "CDSW_APP_PORT": str(rt.app_port),
                "CDSW_READONLY_PORT": str(rt.readonly_port),
                "CDSW_ENGINE_ID": secrets.token_hex(8),
                "CDSW_CPU_MILLICORES": str(int(app.cpu * 1000)),
                "CDSW_MEMORY_MB": str(int(app.memory * 1024)),
            }
        )
        env.update(app.environment)
        header = (
            f"--- {now_rfc3339()} raycai local: starting {app.script} "
            f"(ip {rt.ip}, port {rt.app_port}, platform restarts {app.restarts}) ---\n"
        )
        if self._config().refuse_dot_folder_scripts and dot_folder(app.script):
            await asyncio.to_thread(_append_log, self.log_path(app.id), header + REFUSED_DOT)
            return 126
        rt.phase = "spawning"
        rt.spawning = asyncio.ensure_future(
            spawn(
                [sys.executable, app.script],
                self._project_dir(app.project_id),
                env,
                self.log_path(app.id),
                header,
            )
        )
        try:
            # If cancelled here, _halt() takes the process over from rt.spawning.
            proc = await asyncio.shield(rt.spawning)
        except OSError:
            rt.spawning = None
            return 127
        rt.proc, rt.spawning = proc, None
        rt.starts += 1
        stat = await asyncio.to_thread(proc_stat, proc.pid)
        app.pid, app.pid_start = proc.pid, stat.start_time if stat else None
        self.store.save_soon()
        rt.phase = "starting"
        exited = asyncio.ensure_future(proc.wait())
        try:
            if await self._wait_ready(rt.app_port, exited):
                app.set_status(RUNNING)
                rt.phase = "running"
                rt.running_since = time.monotonic()
                self.store.save_soon()
            return await asyncio.shield(exited)
        finally:
            if not exited.done():
                exited.cancel()

    async def _wait_ready(self, port: int, exited: asyncio.Future[int]) -> bool:
        """Poll GET / like CML's poller: any HTTP response means ready."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        url = f"http://127.0.0.1:{port}/"
        while not exited.done():
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                async with self._http.get(url, allow_redirects=False) as response:
                    await response.read()
                    return True
            await asyncio.wait({exited}, timeout=self._config().ready_poll_s)
        return False

    # -- whole workspace -----------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop every process (apps keep their desired state, so a restart brings them back)."""
        apps = self.store.state.apps
        halts = []
        for app_id, rt in list(self._runtimes.items()):
            app = apps.get(app_id)
            runner_active = rt.task is not None and not rt.task.done()
            if app is None or not (runner_active or rt.alive()):
                continue
            halts.append(self._shutdown_one(app, rt))
        await asyncio.gather(*halts, *list(self._ops), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _shutdown_one(self, app: AppRecord, rt: AppRuntime) -> None:
        async with rt.lock:
            await self._halt(app, rt)
            app.set_status(STOPPED)

    def info(self, app_id: str) -> dict[str, Any]:
        """Workspace-side details of an app, for tests and benchmarks (`/_local/apps`)."""
        rt = self._runtimes.get(app_id)
        app = self.store.state.apps.get(app_id)
        return {
            "id": app_id,
            "phase": rt.phase if rt else "idle",
            "pid": rt.proc.pid if rt and rt.alive() and rt.proc else None,
            "ip": rt.ip if rt and rt.alive() else None,
            "app_port": rt.app_port if rt and rt.alive() else None,
            "readonly_port": rt.readonly_port if rt and rt.alive() else None,
            "starts": rt.starts if rt else 0,
            "restarts": app.restarts if app else 0,
            "waiting_for_quota": self.quota.waiting(app_id),
            "log": str(self.log_path(app_id)),
        }


REFUSED_DOT = "refused: no script from a dot-folder runs here (refuse_dot_folder_scripts)\n"


def dot_folder(script: str) -> bool:
    """Does the script's path pass through a folder whose name starts with a dot?"""
    return any(part.startswith(".") for part in PurePosixPath(script).parts[:-1])


def _append_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
