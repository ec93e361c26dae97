"""What a cluster with `workers.autoscale` needs on its head: Ray's autoscaler config and the
two standalone programs (node provider and runner) copied into its cluster directory.

Rendered with the launchers whenever the spec changes (a scale moves min and max); Ray's
monitor re-reads autoscaler.json on every pass, so new bounds apply without a restart.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from raycai_core.atomic import atomic_write_bytes
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.naming import HEAD_NODE, app_environment, app_name, description
from raycai_core.spec import ClusterSpec, NodeSpec

CONFIG_FILE = "autoscaler.json"
PROVIDER_FILE = "raycai_cml_provider.py"
RUNNER_FILE = "raycai_autoscaler.py"
LOG_FILE = "autoscaler.log"  # in logs/
PROVIDER_CLASS = "raycai_cml_provider.CMLNodeProvider"
PROVIDER_SCHEMA = 1
HEAD_TYPE = "head"
WORKER_TYPE = "worker"
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
    if not spec.workers.autoscale:
        return None
    return {
        "runner": RUNNER_FILE,
        "config": CONFIG_FILE,
        "log": LOG_FILE,
        "update_interval_s": UPDATE_INTERVAL_S,
    }


def ray_resources(node: NodeSpec) -> dict[str, int]:
    """The logical resources the launcher gives `ray start` for this node (they must match,
    or the autoscaler's bin-packing launches too many or too few nodes)."""
    resources = {"CPU": node.ray_num_cpus, "memory": node.ray_memory_bytes}
    if node.ray_num_gpus:
        resources["GPU"] = node.ray_num_gpus
    return resources


def provider_settings(spec: ClusterSpec, paths: ClusterPaths) -> dict[str, Any]:
    """What the provider needs to create workers exactly as raycai does (see
    ClusterManager._request); `{node}`, `{hash}` and `{index}` are filled per node, the
    hash from the head's own project id (CDSW_PROJECT_ID)."""
    cluster = spec.name
    workers = spec.workers
    placeholder = "{node}"
    return {
        "schema": PROVIDER_SCHEMA,
        "cluster": cluster,
        "name_format": app_name(cluster, placeholder),
        "description_format": description(cluster, placeholder),
        "subdomain_format": f"ray-{cluster}-{{hash}}-w{{index}}",
        "environment": app_environment(cluster, placeholder),
        "worker_request": {
            "script": paths.script_relative("worker"),
            "cpu": workers.cpu,
            "memory": workers.memory,
            "nvidia_gpu": workers.nvidia_gpu,
            "kernel": "",
            "bypass_authentication": False,
            "runtime_identifier": workers.runtime_identifier,
        },
    }


def autoscaler_config(spec: ClusterSpec, paths: ClusterPaths) -> dict[str, Any]:
    """Ray's v1 autoscaling config (every key it reads; v1 fills in no defaults)."""
    workers = spec.workers
    return {
        "cluster_name": spec.name,
        "max_workers": workers.max,
        "upscaling_speed": workers.upscaling_speed,
        "idle_timeout_minutes": workers.idle_timeout_s / 60.0,
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
            WORKER_TYPE: {
                "resources": ray_resources(workers),
                "node_config": {
                    "cpu": workers.cpu,
                    "memory": workers.memory,
                    "nvidia_gpu": workers.nvidia_gpu,
                    "runtime_identifier": workers.runtime_identifier,
                },
                "min_workers": workers.min,
                "max_workers": workers.max,
            },
        },
        **_LEGACY_FIELDS,
    }


def template_text(name: str) -> str:
    return resources.files("raycai_core.launcher").joinpath(_TEMPLATES[name]).read_text("utf-8")


def autoscaler_files(paths: ClusterPaths) -> list[Path]:
    """Every file this module writes into the cluster directory (logs excepted)."""
    return [paths.root / name for name in (CONFIG_FILE, PROVIDER_FILE, RUNNER_FILE)]


def render_autoscaler(paths: ClusterPaths, spec: ClusterSpec) -> list[str]:
    """Write autoscaler.json and the two programs when autoscaling is on; names rewritten."""
    if not spec.workers.autoscale:
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
