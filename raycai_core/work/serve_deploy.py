"""Deploy, delete and shut down Serve applications on a cluster (the CLI and the TUI share it).

A deploy loads the user's file, makes its paths `local://` URIs, sets where Serve listens
(raycai's choice, never the file's), merges it by application name into the stored config,
PUTs the whole result and, only once Ray accepted it, stores it (`serve.json`). A refusal
leaves both the cluster and the stored config as they were.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raycai_core.atomic import read_json
from raycai_core.work.serve_config import (
    LOOPBACK,
    POD_NETWORK,
    Config,
    ServeConfigError,
    app_names,
    apply_listen,
    load_serve_config,
    merge,
    read_stored,
    remove_stored,
    rewrite_paths,
    without_app,
    write_stored,
)

if TYPE_CHECKING:
    from raycai_core.ray.client import RayClient
    from raycai_core.ray.models import ServeApplication, ServeStatus
    from raycai_core.work.access import ClusterAccess

# Serve's own default port, for a head launcher older than the head proxy (its head.json has
# no `serve_port`; two heads on one host would collide on it).
SERVE_PORT_FALLBACK = 8000
SETTLED = frozenset({"RUNNING", "DEPLOY_FAILED", "UNHEALTHY"})


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    pod: bool  # `[serve] listen = "pod"`: routes open on the pod network, no token


def _spec_listen(access: ClusterAccess) -> str:
    data = read_json(access.paths.cluster_json)
    spec = data.get("spec") if isinstance(data, dict) else None
    serve = spec.get("serve") if isinstance(spec, dict) else None
    return str(serve.get("listen") or "") if isinstance(serve, dict) else ""


def serve_listen(access: ClusterAccess) -> Listen:
    """Where the cluster's Serve proxy listens: the head's published port, on loopback
    unless the spec opens it to the pod network."""
    port = access.head.serve_port
    pod = _spec_listen(access) == "pod"
    return Listen(POD_NETWORK if pod else LOOPBACK, int(port or SERVE_PORT_FALLBACK), pod)


@dataclass(frozen=True)
class PreparedDeploy:
    config: Config  # the whole merged config to send
    names: list[str]  # the file's applications
    notes: list[str] = field(default_factory=list)  # rewrites and overwrites, one per line


def prepare_deploy(access: ClusterAccess, config_path: Path) -> PreparedDeploy:
    """The merged config to PUT for `config_path` (relative paths in it are relative to
    the file's directory). ServeConfigError when the file cannot be sent. Reads files."""
    config_path = Path(config_path)
    incoming = load_serve_config(config_path)
    project = access.paths.project_dir
    incoming, notes = rewrite_paths(incoming, config_path.resolve().parent, project)
    listen = serve_listen(access)
    incoming, listen_notes = apply_listen(incoming, listen.port, listen.host)
    merged = merge(read_stored(access.paths), incoming)
    return PreparedDeploy(merged, app_names(incoming), notes + listen_notes)


async def apply_config(client: RayClient, access: ClusterAccess, config: Config) -> None:
    """PUT `config`; stored only once Ray accepted it."""
    await client.deploy_serve(config)
    await asyncio.to_thread(write_stored, access.paths, config)


async def deploy(client: RayClient, access: ClusterAccess, config_path: Path) -> PreparedDeploy:
    prepared = await asyncio.to_thread(prepare_deploy, access, config_path)
    await apply_config(client, access, prepared.config)
    return prepared


async def delete_app(client: RayClient, access: ClusterAccess, name: str) -> Config:
    """Sends the stored config without application `name`; returns what was sent."""
    stored = await asyncio.to_thread(read_stored, access.paths)
    if stored is None:
        raise ServeConfigError(
            f"raycai has deployed nothing on {access.name} (no {access.paths.serve_json}): "
            "an application deployed another way goes only with all of Serve"
        )
    config = without_app(stored, name)
    await apply_config(client, access, config)
    return config


async def shutdown(client: RayClient, access: ClusterAccess) -> None:
    """Every application, the controller and the proxies; the stored config goes too."""
    await client.delete_serve()
    await asyncio.to_thread(remove_stored, access.paths)


async def wait_settled(
    client: RayClient,
    names: list[str],
    *,
    timeout: float,
    before: dict[str, float | None] | None = None,
    interval: float = 1.0,
) -> dict[str, ServeApplication | None]:
    """Each named application's state once all are RUNNING, DEPLOY_FAILED or UNHEALTHY, or
    when `timeout` ran out (then some may still be DEPLOYING). An application counts as
    settled when its last deploy time moved past `before`'s, or when seen settled twice in a
    row (a config Ray had already, which it does not deploy again)."""
    before = before or {}
    deadline = time.monotonic() + timeout
    seen_settled: set[str] = set()
    while True:
        state = await client.serve_status()
        apps: dict[str, Any] = {app.name: app for app in state.applications}
        latest = {name: apps.get(name) for name in names}
        settled = set()
        for name, app in latest.items():
            if app is None or app.status not in SETTLED:
                continue
            moved = name not in before or app.last_deployed != before[name]
            if moved or name in seen_settled:
                settled.add(name)
        if len(settled) == len(names) or time.monotonic() >= deadline:
            return latest
        seen_settled = {n for n, a in latest.items() if a is not None and a.status in SETTLED}
        await asyncio.sleep(interval)


def listen_mismatch(state: ServeStatus, listen: Listen) -> str | None:
    """Why the running Serve does not listen where raycai wants it (its HTTP options were
    fixed when it started, by a driver or an older raycai), or None."""
    if not state.running or state.http_host is None:
        return None
    if (state.http_host, state.http_port) == (listen.host, listen.port):
        return None
    return (
        f"Serve already runs with its proxy on {state.http_host}:{state.http_port} (fixed "
        f"when it started); raycai's {listen.host}:{listen.port} takes effect once Serve "
        "restarts (`raycai serve delete NAME`, then deploy again)"
    )
