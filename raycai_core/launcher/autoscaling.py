"""What an autoscaled cluster (any worker group with `autoscale`) needs on its head: Ray's
autoscaler config and the two standalone programs (node provider and runner) copied into its
cluster directory.

One Ray node type per worker group, named by the group (the default group's is `worker`, as
it always was), each with its own min, max and resources: Ray's upscaling picks the type
whose resources satisfy the pending demand. Rendered with the launchers whenever the spec
changes (a scale moves a group's min and max: `render_autoscaler`); Ray's monitor re-reads
autoscaler.json on every pass, so new bounds apply without a restart.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from raycai_core.atomic import atomic_write_bytes
from raycai_core.cluster.autoscaler import autoscaling_on
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.naming import (
    DEFAULT_GROUP,
    HEAD_NODE,
    app_environment,
    app_name,
    description,
    group_hash,
)
from raycai_core.spec import ClusterSpec, NodeSpec, WorkerGroupSpec

CONFIG_FILE = "autoscaler.json"
PROVIDER_FILE = "raycai_cml_provider.py"
RUNNER_FILE = "raycai_autoscaler.py"
LOG_FILE = "autoscaler.log"  # in logs/
PROVIDER_CLASS = "raycai_cml_provider.CMLNodeProvider"
PROVIDER_SCHEMA = 1
HEAD_TYPE = "head"
WORKER_TYPE = DEFAULT_GROUP  # node types are group names; the default group's is `worker`
# Seconds between autoscaler passes (Ray's default is 5): each pass lists the cluster's
# applications once, and a pending task waits at most this long to be noticed.
UPDATE_INTERVAL_S = 2
FILE_MODE = 0o644
_TEMPLATES = {PROVIDER_FILE: "cml_provider.py", RUNNER_FILE: "autoscaler_runner.py"}
# Keys Ray's v1 autoscaler reads without defaults (KubeRay's list of legacy fields).
_LEGACY_FIELDS: dict[str, Any] = {
    "auth": {},
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}


def launcher_settings(spec: ClusterSpec) -> dict[str, Any] | None:
    """launcher.json's `autoscaler` section (None without autoscaling)."""
    if not autoscaling_on(spec):
        return None
    return {
        "runner": RUNNER_FILE,
        "config": CONFIG_FILE,
        "log": LOG_FILE,
        "update_interval_s": UPDATE_INTERVAL_S,
    }


def ray_resources(node: NodeSpec) -> dict[str, float]:
    """The logical resources the launcher gives `ray start` for this node (they must match,
    or the autoscaler's bin-packing launches too many or too few nodes): CPU, memory, GPU
    when any, and a group's custom resources with `accelerator_type:<T>`."""
    resources: dict[str, float] = {"CPU": node.ray_num_cpus, "memory": node.ray_memory_bytes}
    if node.ray_num_gpus:
        resources["GPU"] = node.ray_num_gpus
    if isinstance(node, WorkerGroupSpec):
        resources.update(node.ray_resources())
    return resources


def subdomain_format(cluster: str, group: str) -> str:
    """naming.subdomain's rule with `{hash}` (the cluster's, from the head's project id) and
    `{index}` left to fill: `ray-<c>-{hash}-w{index}`, another group's with its short hash."""
    short = "w{index}" if group == DEFAULT_GROUP else f"{group_hash(group)}w{{index}}"
    return f"ray-{cluster}-{{hash}}-{short}"


def group_request(spec: ClusterSpec, paths: ClusterPaths, group: str) -> dict[str, Any]:
    """The CreateApplicationRequest fields every worker of `group` shares (see
    ClusterManager._request); the accelerator label only when the group has one."""
    workers = spec.group(group)
    request: dict[str, Any] = {
        "script": paths.script_relative("worker"),
        "cpu": workers.cpu,
        "memory": workers.memory,
        "nvidia_gpu": workers.nvidia_gpu,
        "kernel": "",
        "bypass_authentication": False,
        "runtime_identifier": workers.runtime_identifier,
    }
    if workers.accelerator_label_id:
        request["accelerator_label_id"] = workers.accelerator_label_id
    return request


def provider_settings(spec: ClusterSpec, paths: ClusterPaths) -> dict[str, Any]:
    """What the provider needs to create workers exactly as raycai does (see
    ClusterManager._request), per group; `{node}`, `{hash}` and `{index}` are filled per
    node, the hash from the head's own project id (CDSW_PROJECT_ID). The top-level
    `subdomain_format`/`worker_request` (the default group's) stay for readers of the
    one-group shape."""
    cluster = spec.name
    placeholder = "{node}"
    environment = app_environment(cluster, placeholder)
    settings: dict[str, Any] = {
        "schema": PROVIDER_SCHEMA,
        "cluster": cluster,
        "name_format": app_name(cluster, placeholder),
        "description_format": description(cluster, placeholder),
        "environment": environment,
        "groups": {
            group: {
                "subdomain_format": subdomain_format(cluster, group),
                "environment": {**environment, "RAYCAI_GROUP": group},
                "worker_request": group_request(spec, paths, group),
            }
            for group in spec.group_names
        },
    }
    if DEFAULT_GROUP in spec.groups:
        settings["subdomain_format"] = subdomain_format(cluster, DEFAULT_GROUP)
        settings["worker_request"] = group_request(spec, paths, DEFAULT_GROUP)
    return settings


def node_type(group: WorkerGroupSpec, name: str) -> dict[str, Any]:
    """One group's Ray node type: its resources and its own min and max (a group that does
    not autoscale has min = max = its count, which the autoscaler keeps)."""
    return {
        "resources": ray_resources(group),
        "node_config": {
            "group": name,
            "cpu": group.cpu,
            "memory": group.memory,
            "nvidia_gpu": group.nvidia_gpu,
            "runtime_identifier": group.runtime_identifier,
            "accelerator_label_id": group.accelerator_label_id,
        },
        "min_workers": group.min,
        "max_workers": group.max,
    }


def autoscaler_config(spec: ClusterSpec, paths: ClusterPaths) -> dict[str, Any]:
    """Ray's v1 autoscaling config (every key it reads; v1 fills in no defaults)."""
    return {
        "cluster_name": spec.name,
        "max_workers": sum(group.max for group in spec.groups.values()),
        "upscaling_speed": spec.autoscaling.upscaling_speed,
        "idle_timeout_minutes": spec.autoscaling.idle_timeout_s / 60.0,
        "provider": {
            "type": "external",
            "module": PROVIDER_CLASS,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "foreground_node_launch": True,
            "worker_liveness_check": False,
            "raycai": provider_settings(spec, paths),
        },
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {
                "resources": ray_resources(spec.head),
                "node_config": {"node": HEAD_NODE},
                "min_workers": 0,
                "max_workers": 0,
            },
            **{name: node_type(group, name) for name, group in spec.groups.items()},
        },
        **_LEGACY_FIELDS,
    }


def template_text(name: str) -> str:
    return resources.files("raycai_core.launcher").joinpath(_TEMPLATES[name]).read_text("utf-8")


def autoscaler_files(paths: ClusterPaths) -> list[Path]:
    """Every file this module writes into the cluster directory (logs excepted)."""
    return [paths.root / name for name in (CONFIG_FILE, PROVIDER_FILE, RUNNER_FILE)]


def render_autoscaler(paths: ClusterPaths, spec: ClusterSpec) -> list[str]:
    """Write autoscaler.json and the two programs when any group autoscales; the names of the
    files rewritten. The core calls it (through render_cluster) after every change of the
    spec, e.g. a scale that moves a group's min and max."""
    if not autoscaling_on(spec):
        return []
    config = autoscaler_config(spec, paths)
    files = {
        paths.root / CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
        **{paths.root / name: template_text(name).encode("utf-8") for name in _TEMPLATES},
    }
    changed = []
    for path, data in files.items():
        try:
            same = path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            atomic_write_bytes(path, data, mode=FILE_MODE)
            changed.append(path.name)
    return changed
