"""Names of a cluster's applications, nodes and subdomains.

A subdomain must be unique in the whole CML workspace, so it carries a short hash of the
project and the cluster name: two users who both call their cluster `demo` never clash,
while the same cluster in the same project always maps to the same subdomains (which is
what makes a rerun of `up` find the applications it created before).

Worker nodes are named per worker group: `<group>-<k>`. The default group `worker` keeps
the names clusters always had (`worker-3`, app `raycai-demo-worker-3`, subdomain
`ray-demo-1a2b3c-w3`), so a cluster created before groups existed is found unchanged; another
group's subdomain carries a short hash of the group (`ray-demo-1a2b3c-9f0ew3`).
"""

from __future__ import annotations

import hashlib
import re

APP_PREFIX = "raycai-"
HEAD_NODE = "head"
# The group of a cluster written with one [workers] table (and of every older cluster).
DEFAULT_GROUP = "worker"
SUBDOMAIN_MAX = 63
GROUP_HASH_LEN = 4
_WORKER_RE = re.compile(r"^worker-([1-9][0-9]*)$")
# Group names are 1-12 lower-case letters and digits, no hyphen (the spec's rule), so
# `<group>-<k>` parses back.
_GROUP = r"[a-z][a-z0-9]{0,11}"
_GROUP_NODE_RE = re.compile(rf"^({_GROUP})-([1-9][0-9]*)$")


def cluster_hash(project_id: str, cluster: str) -> str:
    return hashlib.sha256(f"{project_id}\x00{cluster}".encode()).hexdigest()[:6]


def group_hash(group: str) -> str:
    """A short hash of a group's name (hex: never `w` or `h`, so no clash with w<k> or h)."""
    return hashlib.sha256(group.encode()).hexdigest()[:GROUP_HASH_LEN]


def worker_node(index: int) -> str:
    """Node k of the default group, `worker-k`."""
    return group_node(DEFAULT_GROUP, index)


def group_node(group: str, index: int) -> str:
    """Node k of a worker group, `<group>-<k>` (`worker-k` for the default group)."""
    if index < 1:
        raise ValueError("worker indexes start at 1")
    if group == HEAD_NODE or not re.fullmatch(_GROUP, group):
        raise ValueError(f"{group!r} is not a worker group name")
    return f"{group}-{index}"


def worker_index(node: str) -> int | None:
    """The k of `worker-k` (the default group only), or None for anything else."""
    match = _WORKER_RE.match(node)
    return int(match.group(1)) if match else None


def _group_and_index(node: str) -> tuple[str, int] | None:
    match = _GROUP_NODE_RE.match(node)
    if match is None or match.group(1) == HEAD_NODE:
        return None
    return match.group(1), int(match.group(2))


def node_group(node: str) -> str | None:
    """The worker group of a worker node (`gpu-2` -> `gpu`, `worker-1` -> `worker`); None for
    the head, which belongs to no worker group, and for anything that is not a node name."""
    parsed = _group_and_index(node)
    return parsed[0] if parsed else None


def node_index(node: str) -> int | None:
    """The k of any group's `<group>-k`, or None for the head or anything else."""
    parsed = _group_and_index(node)
    return parsed[1] if parsed else None


def role_of(node: str) -> str:
    return "head" if node == HEAD_NODE else "worker"


def app_name(cluster: str, node: str) -> str:
    """The application's display name, e.g. `raycai-demo-worker-3`; also the Ray node name."""
    return f"{APP_PREFIX}{cluster}-{node}"


def subdomain(project_id: str, cluster: str, node: str) -> str:
    """A workspace-unique subdomain of at most 63 characters: `ray-demo-1a2b3c-h` for the
    head, `...-w3` for worker-3 of the default group, `...-<grouphash>w3` for another group's."""
    if node == HEAD_NODE:
        short = "h"
    else:
        parsed = _group_and_index(node)
        if parsed is None:
            raise ValueError(f"unknown node {node!r}")
        group, index = parsed
        short = f"w{index}" if group == DEFAULT_GROUP else f"{group_hash(group)}w{index}"
    result = f"ray-{cluster}-{cluster_hash(project_id, cluster)}-{short}"
    if len(result) > SUBDOMAIN_MAX:
        raise ValueError(f"subdomain {result!r} is longer than {SUBDOMAIN_MAX} characters")
    return result


def app_environment(cluster: str, node: str) -> dict[str, str]:
    """The variables set on every cluster application (no secrets); a worker of a group also
    gets RAYCAI_GROUP."""
    environment = {"RAYCAI_CLUSTER": cluster, "RAYCAI_ROLE": role_of(node), "RAYCAI_NODE": node}
    group = node_group(node)
    if group is not None:
        environment["RAYCAI_GROUP"] = group
    return environment


def description(cluster: str, node: str) -> str:
    return f"Ray {role_of(node)} node {node} of raycai cluster {cluster}"
