"""`LocalWorkspace`: the embedded CML workspace (state, app processes, HTTP server) on one
event loop. Start it with `await ws.start()` (returns the base URL), stop it with
`await ws.stop()`, which stops every process it started."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web

from raycai_core.credentials import Credentials, Secret, app_url
from raycai_core.local.config import WorkspaceConfig
from raycai_core.local.faults import FaultConfig, FaultInjector, RequestStats
from raycai_core.local.ingress import DOMAIN_HOST, Ingress
from raycai_core.local.lifecycle import Supervisor
from raycai_core.local.processes import kill_session, leftover_members
from raycai_core.local.server import build_app
from raycai_core.local.state import (
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    AppRecord,
    StateStore,
)

log = logging.getLogger(__name__)


class LocalWorkspace:
    """One workspace in `data_dir` (state.json, projects/<id>/, apps/<id>/output.log).

    After `start()`: `url`, `api_key` (str), `project_id` and `project_dir` (the default
    project), `credentials()`. Test hooks: `stats()`, `reset_stats()`, `set_faults()`,
    `update_config()`, `app_info()`, `apps_info()`. Use from its own event loop only
    (`run_workspace_in_thread` gives a thread-safe handle).
    """

    def __init__(self, data_dir: str | Path, config: WorkspaceConfig | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.config = config or WorkspaceConfig()
        self.request_stats = RequestStats()
        self.faults = FaultInjector(self.request_stats)
        self.ingress = Ingress(self)
        self.url = ""
        self.store: StateStore
        self.supervisor: Supervisor
        self._runner: web.AppRunner | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    # -- identity ------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self.store.state.api_key

    @property
    def workload_key(self) -> str:
        """What apps get as CDSW_APIV2_KEY; acts as the user, never equal to `api_key`."""
        return self.store.state.workload_key

    @property
    def domain(self) -> str:
        """`localhost:<port>` (CDSW_DOMAIN): the ingress serves `http://<subdomain>.<domain>`."""
        return f"{DOMAIN_HOST}:{self.url.rsplit(':', 1)[-1]}"

    def app_url(self, subdomain: str) -> str:
        return app_url(self.domain, subdomain)

    @property
    def project_id(self) -> str:
        return self.store.state.default_project_id

    @property
    def project_dir(self) -> Path:
        return self.project_dir_of(self.project_id)

    def project_dir_of(self, project_id: str) -> Path:
        return self.data_dir / "projects" / project_id

    def credentials(self) -> Credentials:
        return Credentials(
            host=self.url,
            api_key=Secret(self.api_key),
            project_id=self.project_id,
            source="local workspace",
        )

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = await asyncio.to_thread(
            StateStore.open, self.data_dir / "state.json", self.config.project_name
        )
        state = self.store.state
        for project_id in state.projects:
            self.project_dir_of(project_id).mkdir(parents=True, exist_ok=True)
        await self._kill_leftovers()
        self.supervisor = Supervisor(
            self.store, lambda: self.config, self.data_dir, self.project_dir_of, self._platform_env
        )
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        port = await self._listen(self.config.port or state.last_port)
        self.url = f"http://{self.config.host}:{port}"
        state.last_port = port
        for app in sorted(state.apps.values(), key=lambda a: a.seq):
            if app.desired == "running" and app.status != FAILED:
                self.supervisor.launch(app, reset_restarts=False)
            elif app.status in (STARTING, RUNNING, STOPPING):
                app.set_status(STOPPED)
        await self.store.save()
        log.info("local workspace serving %s (data in %s)", self.url, self.data_dir)
        return self.url

    async def _listen(self, port: int) -> int:
        assert self._runner is not None
        try:
            site = web.TCPSite(self._runner, self.config.host, port)
            await site.start()
        except OSError:
            if port == 0 or port == self.config.port:
                raise
            site = web.TCPSite(self._runner, self.config.host, 0)  # the last port is taken
            await site.start()
        return int(self._runner.addresses[0][1])

    async def _kill_leftovers(self) -> None:
        """Processes left running by a previous run that ended without stopping them."""
        state = self.store.state
        recorded = [(a.pid, a.pid_start) for a in state.apps.values() if a.pid]
        recorded += [(pid, start) for pid, start in state.orphans]
        for pid, start in recorded:
            assert pid is not None
            if await asyncio.to_thread(leftover_members, pid, start):
                log.warning("killing processes left by a previous run (session %d)", pid)
                await kill_session(pid, started_after=start)
        state.orphans.clear()

    async def stop(self) -> None:
        """Stop serving, then stop every app process; apps stay desired-running."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.ingress.close()
        if hasattr(self, "supervisor"):
            await self.supervisor.shutdown()
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if hasattr(self, "store"):
            await self.store.flush()

    # -- helpers for the API -------------------------------------------------------------

    def _platform_env(self, app: AppRecord) -> dict[str, str]:
        project = self.store.state.projects.get(app.project_id)
        env = dict(project.environment) if project else {}
        env.update(
            {
                "CDSW_PROJECT_ID": app.project_id,
                "CDSW_PROJECT": project.name if project else "",
                "CDSW_DOMAIN": self.domain,
                "CDSW_API_URL": f"{self.url}/api/v1",
                "HOME": str(self.project_dir_of(app.project_id)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.config.workload_key:
            env["CDSW_APIV2_KEY"] = self.workload_key
        return env

    def remove_project_dir_later(self, project_id: str) -> None:
        """After the project's apps are stopped (they run in that directory)."""

        async def remove() -> None:
            await self.supervisor.wait_background()
            await asyncio.to_thread(shutil.rmtree, self.project_dir_of(project_id), True)

        task = asyncio.get_running_loop().create_task(remove())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # -- test and benchmark hooks --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts of /api/v2 requests: total, by_route ("GET /api/v2/..."), by_status."""
        return self.request_stats.to_json()

    def reset_stats(self) -> None:
        self.request_stats.reset()

    def set_faults(self, config: FaultConfig | None = None, **fields: Any) -> FaultConfig:
        """Replace the injected faults: a FaultConfig, or its fields (none: no faults)."""
        self.faults.set(config if config is not None else FaultConfig(**fields))
        return self.faults.config

    def update_config(self, **changes: Any) -> WorkspaceConfig:
        """Change start_delay_s, quota_*, restart_*, stop_grace_s at run time."""
        self.config = self.config.updated(changes)
        if hasattr(self, "supervisor"):
            self.supervisor.quota.wake()
        return self.config

    def app_info(self, app_id: str) -> dict[str, Any]:
        """pid, ip, ports, phase, starts, restarts of an app (what the API does not show)."""
        info = self.supervisor.info(app_id)
        app = self.store.state.apps.get(app_id)
        if app is not None:
            info.update(name=app.name, project_id=app.project_id, status=app.status)
        return info

    def apps_info(self) -> list[dict[str, Any]]:
        apps = sorted(self.store.state.apps.values(), key=lambda a: a.seq)
        return [self.app_info(app.id) for app in apps]
