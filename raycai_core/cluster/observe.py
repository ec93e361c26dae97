"""Fetch the three sources of a cluster view: app list, launcher records, Ray dashboard."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raycai_core.cluster.apps import APP_FILTER, ClusterApp, group_by_cluster
from raycai_core.cluster.desired import CorruptClusterFile, Desired, read_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.ray_info import combine
from raycai_core.cluster.records import (
    HeadAddress,
    NodeRecord,
    read_head_address,
    read_node_records,
    read_token,
)
from raycai_core.cluster.rolling_state import UpdateStatus, update_status
from raycai_core.cluster.view import ClusterView, RayNodeInfo, merge_cluster
from raycai_core.cml.client import CMLClient
from raycai_core.credentials import Secret
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardError
from raycai_core.ray.models import ClusterUsage, RayNode


@dataclass(frozen=True)
class ClusterFiles:
    """What the project directory says of one cluster: cluster.json, head.json, records."""

    desired: Desired | None
    head: HeadAddress | None
    records: Mapping[str, NodeRecord]
    update: UpdateStatus | None = None  # its last rolling update (rolling.json)


class Observer:
    """Builds ClusterViews. Keeps one dashboard client per head so polls reuse connections."""

    def __init__(self, cml: CMLClient, project_dir: Path, *, ray_timeout: float = 3.0) -> None:
        self.cml = cml
        self.project_dir = Path(project_dir)
        self.ray_timeout = ray_timeout
        self._dashboards: dict[str, tuple[tuple[str, Secret | None], RayClient]] = {}
        # Each cluster's last usage answer, with the alive nodes it was asked for.
        self._usage: dict[str, tuple[frozenset[str], ClusterUsage]] = {}

    async def aclose(self) -> None:
        for _, client in self._dashboards.values():
            await client.aclose()
        self._dashboards.clear()

    async def list_members(self) -> dict[str, list[ClusterApp]]:
        """Every cluster's applications, in one API call."""
        return group_by_cluster(await self.cml.list_applications(APP_FILTER))

    async def dashboard(self, name: str, head: HeadAddress) -> RayClient:
        """The dashboard client for this cluster's current head and token (new when either
        changed: a restarted head moves, a re-created token file replaces the token)."""
        token = read_token(ClusterPaths(self.project_dir, name))
        key = (head.dashboard_url, token)
        cached = self._dashboards.pop(name, None)
        if cached is not None:
            if cached[0] == key:
                self._dashboards[name] = cached
                return cached[1]
            with contextlib.suppress(Exception):  # the old head is gone; so be it
                await cached[1].aclose()
        client = RayClient(head.dashboard_url, token=token, timeout=self.ray_timeout)
        self._dashboards[name] = (key, client)
        return client

    async def ray_nodes(
        self, name: str, head: HeadAddress | None, *, reuse_usage: bool = False
    ) -> tuple[list[RayNodeInfo], str | None]:
        """Ray's node list (authoritative, real time) joined with its usage (may lag or be
        absent at start). `reuse_usage`: the last usage answer, when the same nodes are
        alive, instead of asking (a watcher's light tick; the usage lags 2-8 s anyway)."""
        if head is None:
            return [], "the head has not published its address yet"
        try:
            client = await self.dashboard(name, head)
            cached = self._usage.get(name) if reuse_usage else None
            if cached is not None:
                nodes = await client.nodes()
                if _alive(nodes) == cached[0]:
                    return combine(nodes, cached[1]), None
            nodes_result, usage_result = await asyncio.gather(
                client.nodes(), client.cluster_usage(), return_exceptions=True
            )
            if isinstance(nodes_result, BaseException):
                raise nodes_result
            usage = usage_result if isinstance(usage_result, ClusterUsage) else None
            if isinstance(usage_result, BaseException) and not isinstance(
                usage_result, RayDashboardError
            ):
                raise usage_result
            if usage is None:
                self._usage.pop(name, None)
            else:
                self._usage[name] = (_alive(nodes_result), usage)
            return combine(nodes_result, usage), None
        except RayDashboardError as exc:
            return [], str(exc)

    async def observe(
        self,
        name: str,
        members: list[ClusterApp] | None = None,
        *,
        with_ray: bool = True,
        files: ClusterFiles | None = None,
        reuse_usage: bool = False,
    ) -> ClusterView:
        """The merged view of one cluster. Pass `members` to reuse this tick's app list, and
        `files` to reuse this tick's read of the project files (no thread, no parse)."""
        if members is None:
            members = (await self.list_members()).get(name, [])
        if files is None:
            # A project directory may be a network mount: never read it on the event loop.
            files = await asyncio.to_thread(read_cluster_files, self.project_dir, name)
        desired, head, records = files.desired, files.head, dict(files.records)
        nodes: list[RayNodeInfo] | None = None  # not asked: the launchers' records decide
        error: str | None = None
        if with_ray:
            nodes, error = await self.ray_nodes(name, head, reuse_usage=reuse_usage)
        return merge_cluster(
            name, desired, members, records, head, nodes, error, update=files.update
        )


def read_cluster_files(project_dir: Path, name: str) -> ClusterFiles:
    """The cluster's project files (blocking: call it in a thread)."""
    paths = ClusterPaths(project_dir, name)
    try:
        desired = read_desired(paths)
    except CorruptClusterFile:
        desired = None
    return ClusterFiles(
        desired, read_head_address(paths), read_node_records(paths), update_status(paths)
    )


def _alive(nodes: list[RayNode]) -> frozenset[str]:
    return frozenset(node.node_id for node in nodes if node.state == "ALIVE")
