"""Ray nodes with their used/total resources: the dashboard's node list joined with usage."""

from __future__ import annotations

from raycai_core.cluster.view import RayNodeInfo
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
