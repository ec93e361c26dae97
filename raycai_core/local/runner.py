"""Run a LocalWorkspace on its own thread, for synchronous code and Textual tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from raycai_core.credentials import Credentials
from raycai_core.local.config import WorkspaceConfig
from raycai_core.local.faults import FaultConfig
from raycai_core.local.workspace import LocalWorkspace

T = TypeVar("T")


class WorkspaceHandle:
    """Thread-safe access to a workspace running on another thread's event loop.

    `url`, `domain` (`localhost:<port>`), `app_url(subdomain)`, `api_key` (str),
    `project_id`, `project_dir`, `data_dir`, `credentials()`;
    `stats()`, `reset_stats()`, `set_faults(...)`, `update_config(...)`, `app_info(id)`,
    `apps_info()`, and `workspace` (the LocalWorkspace, for use on its loop only).
    """

    def __init__(self, workspace: LocalWorkspace, loop: asyncio.AbstractEventLoop) -> None:
        self.workspace = workspace
        self.loop = loop
        self.url = workspace.url
        self.domain = workspace.domain
        self.api_key = workspace.api_key
        self.workload_key = workspace.workload_key
        self.project_id = workspace.project_id
        self.project_dir = workspace.project_dir
        self.data_dir = workspace.data_dir

    def __repr__(self) -> str:
        return f"WorkspaceHandle(url={self.url!r}, project_id={self.project_id!r})"

    def credentials(self) -> Credentials:
        return self.workspace.credentials()

    def app_url(self, subdomain: str) -> str:
        return self.workspace.app_url(subdomain)

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function(*args, **kwargs)` on the workspace's loop and return its result."""

        async def run() -> T:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stats(self) -> dict[str, Any]:
        return self.call(self.workspace.stats)

    def reset_stats(self) -> None:
        self.call(self.workspace.reset_stats)

    def set_faults(self, config: FaultConfig | None = None, **fields: Any) -> FaultConfig:
        return self.call(self.workspace.set_faults, config, **fields)

    def update_config(self, **changes: Any) -> WorkspaceConfig:
        return self.call(self.workspace.update_config, **changes)

    def app_info(self, app_id: str) -> dict[str, Any]:
        return self.call(self.workspace.app_info, app_id)

    def apps_info(self) -> list[dict[str, Any]]:
        return self.call(self.workspace.apps_info)


@contextmanager
def run_workspace_in_thread(
    data_dir: str | Path,
    config: WorkspaceConfig | None = None,
    *,
    start_timeout: float = 30.0,
    stop_timeout: float | None = None,
) -> Iterator[WorkspaceHandle]:
    """`with run_workspace_in_thread(dir, config) as handle:` a started workspace; on exit
    it is stopped (every app process killed) and the thread ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="raycai-local-workspace", daemon=True)
    thread.start()
    workspace = LocalWorkspace(data_dir, config)
    if stop_timeout is None:
        stop_timeout = workspace.config.stop_grace_s + 30.0
    try:
        asyncio.run_coroutine_threadsafe(workspace.start(), loop).result(start_timeout)
        yield WorkspaceHandle(workspace, loop)
    finally:
        try:
            asyncio.run_coroutine_threadsafe(workspace.stop(), loop).result(stop_timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()
