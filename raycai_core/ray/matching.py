"""Which Ray node is a CML application's: THE rule, for the core's views (cluster/view.py)
and, copied, for the head's autoscaler provider (launcher/cml_provider.py: `ray_node`,
`launcher_ip`, `node_ip`), which cannot import raycai_core; tests/test_head_parity.py keeps
the two equal.

A Ray node belongs to application `node` of cluster `cluster` when it carries both raycai
labels (`raycai/cluster=<cluster>`, `raycai/node=<node>`, which every launcher gives `ray
start`) and started no earlier than the application's creation minus `CLOCK_SLACK_S`;
alive before dead, newest first. So a recreated `worker-2` is never matched to the previous
`worker-2`'s Ray node, which Ray may still list ALIVE until its health check fails. When Ray
lists no such node, the launcher's record (written by this application) gives its IP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

CLUSTER_LABEL = "raycai/cluster"
NODE_LABEL = "raycai/node"
# A Ray node or record that started before its application was created belongs to an
# earlier application of the same name (the workspace's and the nodes' clocks may differ).
CLOCK_SLACK_S = 5.0
ALIVE = "ALIVE"


class MatchableNode(Protocol):
    """What the rule reads of a Ray node (`ray.models.RayNode`, `cluster.view.RayNodeInfo`)."""

    @property
    def node_id(self) -> str: ...

    @property
    def node_ip(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def start_time(self) -> float | None: ...


N = TypeVar("N", bound=MatchableNode)


def node_labels(cluster: str, node: str) -> dict[str, str]:
    """The labels a raycai launcher gives its Ray node (template.py: `--labels`)."""
    return {CLUSTER_LABEL: cluster, NODE_LABEL: node}


def started_in_time(started: float | None, created: float | None) -> bool:
    """Started no earlier than the application's creation (minus the slack); an unknown time
    (None or 0) on either side does not exclude."""
    return not created or not started or started >= created - CLOCK_SLACK_S


def _newest_first(nodes: Iterable[N]) -> list[N]:
    """Alive first, then newest first; equal start times by node id, highest first, so that
    the answer never depends on the order Ray lists its nodes in."""
    return sorted(
        nodes, key=lambda n: (n.state == ALIVE, n.start_time or 0.0, n.node_id), reverse=True
    )


def match_ray_node(
    nodes: Iterable[N],
    cluster: str,
    node: str,
    created_at: float | None,
    record_ip: str | None = None,
) -> N | None:
    """Application `node`'s Ray node: by its labels (see the module's docstring); when Ray
    lists none, an unlabelled node at `record_ip` (the launcher's record, `launcher_ip`)
    that started in time. None when neither."""
    nodes = list(nodes)
    labelled = [
        n
        for n in nodes
        if n.labels.get(CLUSTER_LABEL) == cluster
        and n.labels.get(NODE_LABEL) == node
        and started_in_time(n.start_time, created_at)
    ]
    if labelled:
        return _newest_first(labelled)[0]
    if not record_ip:
        return None
    by_ip = [
        n
        for n in nodes
        if NODE_LABEL not in n.labels
        and n.node_ip == record_ip
        and started_in_time(n.start_time, created_at)
    ]
    return _newest_first(by_ip)[0] if by_ip else None


def launcher_ip(
    records: Iterable[tuple[str | None, float | None]], created_at: float | None
) -> str | None:
    """The IP of the first launcher record `(ip, started_at)` written by this application
    (the head: head.json, then nodes/head.json; a worker: nodes/<node>.json). A record that
    started before the application was created holds an earlier application's IP, which the
    platform may have given to another pod since."""
    for ip, started in records:
        if ip and started_in_time(started, created_at):
            return ip
    return None


def node_ip(
    nodes: Iterable[MatchableNode],
    cluster: str,
    node: str,
    created_at: float | None,
    record_ip: str | None,
) -> str | None:
    """The IP Ray uses for application `node` (Ray's v1 autoscaler keys its load data by
    IP, so this is what the head's provider reports): its ALIVE Ray node's, else the
    launcher record's."""
    alive = [n for n in nodes if n.state == ALIVE and n.node_ip]
    match = match_ray_node(alive, cluster, node, created_at)
    return match.node_ip if match is not None else record_ip
