"""The raycai_core objects the screens work with, created once the target is known.

Imported lazily (after the first frame): it pulls in httpx, pydantic and raycai_core.cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import (
    ClusterManager,
    ClusterSummary,
    ProgressCallback,
    summarise,
)
from raycai_core.cluster.observe import ClusterFiles, Observer
from raycai_core.cluster.records import HeadAddress, read_head_address
from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.models import Runtime
from raycai_core.target import Target

# A poll that keeps failing should show up as stale within seconds, not after the client's
# default minute of retries; the poller's own backoff takes over from there.
TUI_RETRY = RetryPolicy(attempts=3, initial_wait=0.2, max_wait=2.0, deadline=10.0)
TUI_TIMEOUT = httpx.Timeout(15.0, connect=5.0, pool=10.0)


@dataclass(frozen=True)
class Snapshot:
    """Every cluster of the project at one moment: one app list call plus the project files
    (read once per tick: the cluster screen merges from them too, see `files`)."""

    members: dict[str, list[ClusterApp]]
    summaries: list[ClusterSummary]
    taken_at: float
    heads: dict[str, HeadAddress | None] = field(default_factory=dict)  # head.json, by cluster

    def summary(self, name: str) -> ClusterSummary | None:
        return next((s for s in self.summaries if s.name == name), None)

    def files(self, name: str) -> ClusterFiles | None:
        """The cluster's project files as this snapshot read them; None when it did not
        read them all (a snapshot built by hand has no head addresses)."""
        summary = self.summary(name)
        if summary is None or name not in self.heads:
            return None
        return ClusterFiles(summary.desired, self.heads[name], summary.records, summary.update)


@dataclass
class Services:
    target: Target
    cml: CMLClient
    observer: Observer
    project_name: str = ""
    last_runtime: str | None = None  # the create form offers it again
    _runtimes: list[Runtime] | None = field(default=None, repr=False)

    @classmethod
    async def open(cls, target: Target, *, ray_timeout: float = 3.0) -> Services:
        cml = CMLClient(target.credentials, retry=TUI_RETRY, timeout=TUI_TIMEOUT)
        services = cls(target, cml, Observer(cml, target.project_dir, ray_timeout=ray_timeout))
        with contextlib.suppress(Exception):  # the header then shows the id alone
            project = await asyncio.wait_for(cml.get_project(), 10.0)
            services.project_name = project.name
        return services

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.observer.aclose()
        with contextlib.suppress(Exception):
            await self.cml.aclose()

    # -- what the header shows ---------------------------------------------------------

    @property
    def workspace_label(self) -> str:
        return self.target.label

    @property
    def project_label(self) -> str:
        project_id = self.target.credentials.project_id
        return f"{self.project_name} ({project_id})" if self.project_name else project_id

    # -- operations ----------------------------------------------------------------------

    def manager(self, progress: ProgressCallback | None = None) -> ClusterManager:
        """A ClusterManager whose progress goes to `progress` (one per operation)."""
        return ClusterManager(
            self.cml, self.target.project_dir, progress=progress, observer=self.observer
        )

    async def snapshot(self) -> Snapshot:
        """One CML API call (the app list), then the project files, read off the UI thread
        (in one thread: starting one costs more than reading a few small files)."""
        members = await self.observer.list_members()
        summaries, heads = await asyncio.to_thread(_read_project, self.target.project_dir, members)
        return Snapshot(members, summaries, time.time(), heads)

    async def runtimes(self) -> list[Runtime]:
        if self._runtimes is None:
            found = await self.cml.list_runtimes()
            self._runtimes = [r for r in found if r.status in ("", "ENABLED")] or found
        return self._runtimes

    async def shared_memory_limit(self) -> int | None:
        """The project's shared_memory_limit (MB), read again: the doctor may have set it."""
        return (await self.cml.get_project()).shared_memory_limit

    def app_url(self, subdomain: str) -> str:
        """Where CML serves an application (behind CML authentication)."""
        return self.target.credentials.app_url(subdomain)


def _read_project(
    project_dir: Path, members: dict[str, list[ClusterApp]]
) -> tuple[list[ClusterSummary], dict[str, HeadAddress | None]]:
    summaries = summarise(project_dir, members)
    heads = {s.name: read_head_address(ClusterPaths(project_dir, s.name)) for s in summaries}
    return summaries, heads
