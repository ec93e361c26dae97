"""Names of a cluster's applications, nodes and subdomains.

A subdomain must be unique in the whole CML workspace, so it carries a short hash of the
project and the cluster name: two users who both call their cluster `demo` never clash,
while the same cluster in the same project always maps to the same subdomains (which is
what makes a rerun of `up` find the applications it created before).
"""

from __future__ import annotations

import hashlib
import re

APP_PREFIX = "raycai-"
HEAD_NODE = "head"
SUBDOMAIN_MAX = 63
_WORKER_RE = re.compile(r"^worker-([1-9][0-9]*)$")


def cluster_hash(project_id: str, cluster: str) -> str:
    return hashlib.sha256(f"{project_id}\x00{cluster}".encode()).hexdigest()[:6]


def worker_node(index: int) -> str:
    if index < 1:
        raise ValueError("worker indexes start at 1")
    return f"worker-{index}"


def worker_index(node: str) -> int | None:
    """The k of `worker-k`, or None for the head or anything else."""
    match = _WORKER_RE.match(node)
    return int(match.group(1)) if match else None


def role_of(node: str) -> str:
    return "head" if node == HEAD_NODE else "worker"


def app_name(cluster: str, node: str) -> str:
    """The application's display name, e.g. `raycai-demo-worker-3`; also the Ray node name."""
    return f"{APP_PREFIX}{cluster}-{node}"


def subdomain(project_id: str, cluster: str, node: str) -> str:
    """A workspace-unique subdomain of at most 63 characters, e.g. `ray-demo-1a2b3c-w3`."""
    index = worker_index(node)
    short = "h" if node == HEAD_NODE else f"w{index}"
    if index is None and node != HEAD_NODE:
        raise ValueError(f"unknown node {node!r}")
    result = f"ray-{cluster}-{cluster_hash(project_id, cluster)}-{short}"
    if len(result) > SUBDOMAIN_MAX:
        raise ValueError(f"subdomain {result!r} is longer than {SUBDOMAIN_MAX} characters")
    return result


def app_environment(cluster: str, node: str) -> dict[str, str]:
    """The variables set on every cluster application (no secrets)."""
    return {"RAYCAI_CLUSTER": cluster, "RAYCAI_ROLE": role_of(node), "RAYCAI_NODE": node}


def description(cluster: str, node: str) -> str:
    return f"Ray {role_of(node)} node {node} of raycai cluster {cluster}"
