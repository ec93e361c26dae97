"""Write a cluster's launchers, launcher.json and Ray token into the project directory.

The scripts are the template with only its constants block replaced (values written with
repr(), so no input can change the code); everything else the launchers need is in
launcher.json, which a re-render (e.g. after a scale) rewrites atomically.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from raycai_core.atomic import atomic_write_bytes
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.phases import LAUNCHER_CONSTANTS
from raycai_core.cluster.records import read_token
from raycai_core.credentials import Secret
from raycai_core.launcher import ray_logs
from raycai_core.launcher.autoscaling import launcher_settings, render_autoscaler
from raycai_core.naming import DEFAULT_GROUP
from raycai_core.spec import ClusterSpec, NodeSpec, WorkerGroupSpec

__all__ = [
    "LAUNCHER_SCHEMA",
    "PROXY_FILE",
    "ROLES",
    "RenderedCluster",
    "ensure_gitignore",
    "ensure_token",
    "head_programs",
    "launcher_config",
    "read_token",
    "render_cluster",
    "render_script",
]

LAUNCHER_SCHEMA = 1
ROLES = ("head", "worker")
TOKEN_FILE = "auth_token"
GITIGNORE_NOTE = "# raycai: each cluster's Ray token stays out of the project's git snapshots\n"
RAY_LOGS_NOTE = "# raycai: so do the copies of the nodes' Ray logs (up to 200 MB a cluster)\n"
RAY_LOGS_IGNORED = "clusters/*/logs/*/ray/"  # relative to the launcher folder
# The head proxy (head_proxy.py), copied beside the launchers; the head runs it on its
# application's port with Ray's Python.
PROXY_FILE = "raycai_head_proxy.py"
PROXY_LOG = "proxy.log"  # in logs/
# The head's idle check (idle_suspend.py), copied beside the launchers when the spec sets
# idle_suspend_minutes; the head runs it with Ray's Python.
IDLE_FILE = "raycai_idle_suspend.py"
IDLE_LOG = "idle.log"  # in logs/
SERVE_PREFIX = "/serve"  # a Serve route /hello is <head application URL>/serve/hello
SCRIPT_MODE = 0o644
TOKEN_MODE = 0o600
_BLOCK_RE = re.compile(
    r"^# raycai:constants-begin\n.*?^# raycai:constants-end\n", re.MULTILINE | re.DOTALL
)
_VOCABULARY_RE = re.compile(
    r"^# raycai:vocabulary-begin\n.*?^# raycai:vocabulary-end\n", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class RenderedCluster:
    paths: ClusterPaths
    launcher: dict[str, Any]
    changed: tuple[str, ...]  # file names rewritten by this render (empty: nothing to do)


def template_source() -> str:
    return resources.files("raycai_core.launcher").joinpath("template.py").read_text("utf-8")


def fill_constants(template: str, values: dict[str, str]) -> str:
    """The template with its constants block set to `values` (any strings, via repr())."""
    lines = ["# raycai:constants-begin"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    lines.append("# raycai:constants-end")
    rendered, count = _BLOCK_RE.subn(lambda _: "\n".join(lines) + "\n", template, count=1)
    if count != 1:
        raise RuntimeError("the launcher template has no constants block")
    return rendered


def fill_vocabulary(template: str) -> str:
    """The template with its vocabulary block set from raycai_core.cluster.phases."""
    lines = ["# raycai:vocabulary-begin"]
    # Strings in double quotes, as the formatter writes the template's own literal block.
    lines += [
        f"{name} = {json.dumps(value) if isinstance(value, str) else repr(value)}"
        for name, value in LAUNCHER_CONSTANTS.items()
    ]
    lines.append("# raycai:vocabulary-end")
    rendered, count = _VOCABULARY_RE.subn(lambda _: "\n".join(lines) + "\n", template, count=1)
    if count != 1:
        raise RuntimeError("the launcher template has no vocabulary block")
    return rendered


def render_script(role: str, cluster_dir: str | PurePosixPath) -> str:
    """The launcher for `role` of the cluster at `cluster_dir` (relative to the project root)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    relative = PurePosixPath(cluster_dir)
    text = str(relative)
    if relative.is_absolute() or ".." in relative.parts or "\x00" in text or "\n" in text:
        raise ValueError(f"cluster dir must be relative to the project root, not {text!r}")
    template = fill_vocabulary(template_source())
    return fill_constants(template, {"ROLE": role, "CLUSTER_DIR": text})


def _resources(node: NodeSpec) -> dict[str, int]:
    return {
        "num_cpus": node.ray_num_cpus,
        "num_gpus": node.ray_num_gpus,
        "memory": node.ray_memory_bytes,
        "object_store_memory": node.ray_object_store_bytes,
    }


def _group(group: WorkerGroupSpec) -> dict[str, Any]:
    """A worker group's `ray start` settings: sizes, custom resources (with
    `accelerator_type:<T>`) and the user's labels (the launcher adds raycai's own)."""
    return {**_resources(group), "resources": group.ray_resources(), "labels": dict(group.labels)}


def launcher_config(spec: ClusterSpec) -> dict[str, Any]:
    """launcher.json: everything the launchers read at run time (no secrets). Every worker
    runs the same worker.py and finds its group's entry in `groups`; `worker` (the default
    group's sizes) stays for launchers that predate groups."""
    default = spec.groups.get(DEFAULT_GROUP)
    return {
        "schema": LAUNCHER_SCHEMA,
        "cluster": spec.name,
        "ray": {
            "version": spec.ray.version,
            "search": list(spec.ray.search),
            "gcs_port": spec.ray.gcs_port,
            "client_port": spec.ray.client_port,
        },
        "auth": {"mode": "token", "token_file": TOKEN_FILE},
        "head": _resources(spec.head),
        **({"worker": _resources(default)} if default is not None else {}),
        "groups": {name: _group(group) for name, group in spec.groups.items()},
        "env": dict(spec.env),
        "serve": {"listen": spec.serve.listen},
        "proxy": {"program": PROXY_FILE, "prefix": SERVE_PREFIX, "log": PROXY_LOG},
        "ray_logs": {
            "program": ray_logs.PROGRAM,
            "cap_bytes": ray_logs.CAP_BYTES,
            "interval_s": ray_logs.INTERVAL_S,
        },
        **({"autoscaler": a} if (a := launcher_settings(spec)) else {}),
        **({"idle_suspend": i} if (i := idle_settings(spec)) else {}),
    }


def idle_settings(spec: ClusterSpec) -> dict[str, Any] | None:
    """launcher.json's `idle_suspend` (None when the spec never suspends): the minutes and
    the workers each group keeps, stopped, while suspended (its count: the minimum when it
    autoscales); the rest are deleted."""
    if spec.idle_suspend_minutes is None:
        return None
    return {
        "minutes": spec.idle_suspend_minutes,
        "keep": {name: group.count for name, group in spec.groups.items()},
        "program": IDLE_FILE,
        "log": IDLE_LOG,
    }


def head_programs(paths: ClusterPaths) -> list[Path]:
    """The programs render_cluster copies for every cluster (the autoscaler's apart)."""
    return [paths.root / PROXY_FILE, paths.root / ray_logs.PROGRAM, paths.root / IDLE_FILE]


def ensure_token(paths: ClusterPaths, token: Secret | None = None) -> bool:
    """Write the cluster's token file (0600) if absent, or `token` if given; True if written."""
    current = read_token(paths)
    if token is None:
        if current is not None:
            _tighten(paths.auth_token)
            return False
        token = Secret(secrets.token_hex(32))
    elif current == token:
        _tighten(paths.auth_token)
        return False
    atomic_write_bytes(paths.auth_token, token.reveal().encode("utf-8"), mode=TOKEN_MODE)
    return True


def ensure_gitignore(paths: ClusterPaths) -> bool:
    """A non-dot launcher folder's `.gitignore` names the token file and the Ray log copies
    (CML commits the project's files to git snapshots); a line the user's own file lacks is
    appended. True if written."""
    path = paths.gitignore
    if path is None:
        return False
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    present = {line.strip() for line in current.splitlines()}
    wanted = ((GITIGNORE_NOTE, TOKEN_FILE), (RAY_LOGS_NOTE, RAY_LOGS_IGNORED))
    missing = [note + line + "\n" for note, line in wanted if line not in present]
    if not missing:
        return False
    head = current if not current or current.endswith("\n") else current + "\n"
    text = head + "".join(missing)
    atomic_write_bytes(path, text.encode("utf-8"), mode=SCRIPT_MODE)
    return True


def _tighten(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        os.chmod(path, TOKEN_MODE)


def _write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    try:
        same = path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(path, data, mode=mode)
    return not same


def render_cluster(
    project_dir: Path, spec: ClusterSpec, *, token: Secret | None = None
) -> RenderedCluster:
    """Write launcher.json, head.py, worker.py, the head proxy and (once per cluster)
    auth_token.

    Idempotent: the same spec gives the same bytes and rewrites nothing. `token` replaces the
    cluster's token; without it one is generated when the cluster has none.
    """
    paths = ClusterPaths(Path(project_dir), spec.name)
    for directory in (paths.root, paths.nodes_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    if ensure_gitignore(paths):
        changed.append(".gitignore")
    if ensure_token(paths, token):
        changed.append(TOKEN_FILE)
    config = launcher_config(spec)
    files = {
        paths.launcher_json: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
        paths.script("head"): render_script("head", paths.relative).encode("utf-8"),
        paths.script("worker"): render_script("worker", paths.relative).encode("utf-8"),
        paths.root / PROXY_FILE: resources.files("raycai_core.launcher")
        .joinpath("head_proxy.py")
        .read_bytes(),
        paths.root / ray_logs.PROGRAM: resources.files("raycai_core.launcher")
        .joinpath("ray_logs.py")
        .read_bytes(),
    }
    idle = paths.root / IDLE_FILE
    if spec.idle_suspend_minutes is not None:
        program = resources.files("raycai_core.launcher").joinpath("idle_suspend.py")
        files[idle] = program.read_bytes()
    elif idle.exists():
        idle.unlink()
        changed.append(IDLE_FILE)
    for path, data in files.items():
        if _write_if_changed(path, data, SCRIPT_MODE):
            changed.append(path.name)
    changed += render_autoscaler(paths, spec)
    return RenderedCluster(paths=paths, launcher=config, changed=tuple(changed))
