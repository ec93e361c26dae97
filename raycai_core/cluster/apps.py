"""Which applications belong to which cluster, read from the app list in one API call."""

from __future__ import annotations

from dataclasses import dataclass

from raycai_core.cml.models import Application
from raycai_core.naming import APP_PREFIX, HEAD_NODE, node_group, node_index

# Substring filter that the API applies server-side; membership is then read from the
# environment each app was created with (a name alone is ambiguous when names contain '-').
APP_FILTER = {"name": APP_PREFIX}


@dataclass(frozen=True)
class ClusterApp:
    app: Application
    cluster: str
    node: str

    @property
    def role(self) -> str:
        return "head" if self.node == HEAD_NODE else "worker"

    @property
    def index(self) -> int:
        """0 for the head, k for `<group>-k`."""
        return node_index(self.node) or 0

    @property
    def group(self) -> str | None:
        """The worker group (`worker` for `worker-k`), None for the head."""
        return node_group(self.node)


def as_cluster_app(app: Application) -> ClusterApp | None:
    cluster = app.environment.get("RAYCAI_CLUSTER")
    node = app.environment.get("RAYCAI_NODE")
    if not cluster or not node or not app.name.startswith(APP_PREFIX):
        return None
    if node != HEAD_NODE and node_group(node) is None:
        return None
    return ClusterApp(app=app, cluster=cluster, node=node)


def _order(member: ClusterApp) -> tuple[str, int, float]:
    """The head, then each group's workers by index (groups by name)."""
    created = member.app.created_at
    return member.group or "", member.index, created.timestamp() if created else 0.0


def group_by_cluster(apps: list[Application]) -> dict[str, list[ClusterApp]]:
    clusters: dict[str, list[ClusterApp]] = {}
    for app in apps:
        member = as_cluster_app(app)
        if member is not None:
            clusters.setdefault(member.cluster, []).append(member)
    for members in clusters.values():
        members.sort(key=_order)
    return clusters
