"""Ray nodes with their used/total resources: the dashboard's node list joined with usage."""

from __future__ import annotations

import asyncio

from raycai_core.cluster.view import RayNodeInfo
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardError
from raycai_core.ray.models import ClusterUsage, RayNode


def _pair(usage: ClusterUsage | None, node: RayNode, resource: str) -> tuple[float, float]:
    total = float(node.resources_total.get(resource, 0.0))
    if usage is None:
        return 0.0, total
    entry = usage.by_node.get(node.node_id, {}).get(resource)
    if entry is None:
        return 0.0, total
    return entry.used, entry.total or total


def combine(nodes: list[RayNode], usage: ClusterUsage | None) -> list[RayNodeInfo]:
    return [
        RayNodeInfo(
            node_id=node.node_id,
            node_name=node.node_name,
            state=node.state,
            is_head=node.is_head,
            cpu=_pair(usage, node, "CPU"),
            gpu=_pair(usage, node, "GPU"),
            memory=_pair(usage, node, "memory"),
            start_time=node.start_time,
            node_ip=node.node_ip,
            labels=dict(node.labels),
        )
        for node in nodes
    ]


async def fetch_ray_nodes(client: RayClient) -> list[RayNodeInfo]:
    """The node list (authoritative, real time) and usage (may lag or be absent at start)."""
    nodes_result, usage_result = await asyncio.gather(
        client.nodes(), client.cluster_usage(), return_exceptions=True
    )
    if isinstance(nodes_result, BaseException):
        raise nodes_result
    usage = usage_result if isinstance(usage_result, ClusterUsage) else None
    if isinstance(usage_result, BaseException) and not isinstance(usage_result, RayDashboardError):
        raise usage_result
    return combine(nodes_result, usage)
