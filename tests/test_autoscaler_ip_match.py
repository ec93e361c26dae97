"""raycai's node provider reports, for each application, the IP Ray itself uses for it: the
alive Ray node carrying its labels, asked once per pass from the head's dashboard; the
launcher's record when Ray does not list it or does not answer.

Against the real local workspace (its apps stay STARTING: the API is what counts) and a
scripted Ray: stand_in_ray's dashboard (Ray 2.60's envelope, filters and token check) served
in this process, with the nodes each test adds and ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.launcher import autoscaling
from raycai_core.launcher.render import render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE
from tests.fixtures.stand_in_ray import Gcs, dashboard_handler, node_of
from tests.test_autoscaler_provider import (
    autoscaled_spec,
    load_provider,
    scale,
    workload_env,
    write_record,
)

CLUSTER = "match"
HEAD_IP = "127.0.0.42"
LOGGER = "raycai_cml_provider"


class ScriptedRay:
    """The head's dashboard with the node table a test scripts; counts node list requests."""

    def __init__(self, token: str | None, ip: str = HEAD_IP) -> None:
        head = self.node("head", ip, cluster=CLUSTER, is_head=True)
        self.gcs = Gcs(head, hashlib.sha256(token.encode()).hexdigest() if token else None)
        self.node_lists = 0
        base = dashboard_handler(self.gcs)
        outer = self

        class Counting(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                if self.path.startswith("/api/v0/nodes"):
                    outer.node_lists += 1
                super().do_GET()

        self.server = ThreadingHTTPServer((ip, 0), Counting)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @staticmethod
    def node(node: str, ip: str, *, cluster: str, is_head: bool = False) -> dict[str, Any]:
        """What `ray start` makes of a raycai launcher's flags (template.py: common_args)."""
        labels = f"raycai/cluster={cluster},raycai/node={node}"
        args = ["--node-ip-address", ip, "--node-name", f"raycai-{cluster}-{node}"]
        return node_of([*args, "--labels", labels], is_head=is_head)

    def join(self, node: str, ip: str, *, cluster: str = CLUSTER, started_at: float = 0) -> str:
        node_id = self.gcs.add(self.node(node, ip, cluster=cluster))
        if started_at:
            with self.gcs.lock:
                for listed in self.gcs.nodes:
                    if listed["node_id"] == node_id:
                        listed["start_time_ms"] = int(started_at * 1000)
        return node_id

    def end(self, node_id: str) -> None:
        self.gcs.end(node_id, "Unexpected termination: health check failed")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def publish_head(paths: ClusterPaths, dashboard_port: int) -> None:
    head = {"schema": 1, "ip": HEAD_IP, "gcs_port": 6379, "dashboard_port": dashboard_port}
    paths.head_json.write_text(json.dumps(head))


def cluster_token(paths: ClusterPaths) -> str:
    return paths.auth_token.read_text().strip()


@pytest.fixture
def paths(idle_workspace: WorkspaceHandle) -> ClusterPaths:
    spec = autoscaled_spec(name=CLUSTER)
    rendered = render_cluster(idle_workspace.project_dir, spec).paths
    write_desired(rendered, spec)
    return rendered


@pytest.fixture
def scripted_ray(paths: ClusterPaths) -> Iterator[ScriptedRay]:
    ray = ScriptedRay(cluster_token(paths))
    publish_head(paths, ray.port)
    yield ray
    ray.close()


def make_provider(
    paths: ClusterPaths, handle: WorkspaceHandle, environ: dict[str, str], timeout: float = 2.0
) -> Any:
    """The rendered provider as Ray's monitor builds it, asking Ray with `environ`'s auth
    variables (the head launcher gives the monitor RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH)."""
    module = load_provider(paths)
    config = json.loads((paths.root / autoscaling.CONFIG_FILE).read_text())
    api = module.CMLApi.from_environment(workload_env(handle))
    ray_nodes = module.RayNodes(str(paths.root), CLUSTER, environ=environ, timeout=timeout)
    return module.CMLNodeProvider(
        config["provider"], CLUSTER, api=api, cluster_dir=str(paths.root), ray_nodes=ray_nodes
    )


async def start_cluster(
    handle: WorkspaceHandle, cml_client: CMLClient, paths: ClusterPaths, provider: Any
) -> dict[str, str]:
    """A head application and two workers created by the provider: node name -> app id."""
    ops = ClusterManager(cml_client, handle.project_dir)
    head = await cml_client.create_application(ops._request(autoscaled_spec(CLUSTER), HEAD_NODE))
    await ops.observer.aclose()
    scale(provider, add=2)
    provider.non_terminated_nodes({})
    apps = {node: app_id for app_id, node in provider.nodes.items()}
    assert apps == {"head": head.id, "worker-1": apps["worker-1"], "worker-2": apps["worker-2"]}
    return apps


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


async def test_rays_ip_for_the_labelled_node_wins_over_the_record(
    idle_workspace: WorkspaceHandle,
    cml_client: CMLClient,
    paths: ClusterPaths,
    scripted_ray: ScriptedRay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    token = cluster_token(paths)
    environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(paths.auth_token)}
    provider = make_provider(paths, idle_workspace, environ)
    apps = await start_cluster(idle_workspace, cml_client, paths, provider)
    write_record(paths, "worker-1", ip="127.0.0.51")
    write_record(paths, "worker-2", ip="127.0.0.52")
    # Ray lists worker-1 at another IP than its record; worker-2 only as another cluster's
    # node and as an earlier application's node that Ray has not found dead yet.
    worker_1 = scripted_ray.join("worker-1", "127.0.0.61")
    scripted_ray.join("worker-2", "127.0.0.72", cluster="match-2")
    scripted_ray.join("worker-2", "127.0.0.82", started_at=time.time() - 3600)
    passes_before = scripted_ray.node_lists
    provider.non_terminated_nodes({})
    provider.non_terminated_nodes({})
    assert scripted_ray.node_lists == passes_before + 2  # one question to Ray per pass
    assert provider.internal_ip(apps["head"]) == HEAD_IP
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.61"
    assert provider.internal_ip(apps["worker-2"]) == "127.0.0.52"
    disagreements = [m for m in warnings_of(caplog) if "worker-1" in m]
    assert len(disagreements) == 1, warnings_of(caplog)  # said once, not every pass
    assert "127.0.0.61" in disagreements[0] and "127.0.0.51" in disagreements[0]

    # A node with no record yet is found by its labels alone.
    paths.node_record("worker-2").unlink()
    scripted_ray.join("worker-2", "127.0.0.62")
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-2"]) == "127.0.0.62"

    # A dead Ray node with the labels is ignored: the record again, until a new one joins.
    scripted_ray.end(worker_1)
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.51"
    scripted_ray.join("worker-1", "127.0.0.63")
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.63"
    assert token not in caplog.text


async def test_no_answer_from_ray_falls_back_to_the_records(
    idle_workspace: WorkspaceHandle,
    cml_client: CMLClient,
    paths: ClusterPaths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    environ = {"RAY_AUTH_TOKEN_PATH": str(paths.auth_token)}
    provider = make_provider(paths, idle_workspace, environ, timeout=0.5)
    # Before the head has published its address, and with nothing listening there.
    apps = await start_cluster(idle_workspace, cml_client, paths, provider)
    write_record(paths, "worker-1", ip="127.0.0.51")
    paths.head_json.unlink(missing_ok=True)
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.51"
    with socket.socket() as closed:
        closed.bind((HEAD_IP, 0))
        publish_head(paths, closed.getsockname()[1])  # bound, not listening: refused
    provider.non_terminated_nodes({})
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.51"
    assert provider.internal_ip(apps["head"]) == HEAD_IP  # head.json's
    refused = [m for m in warnings_of(caplog) if "does not answer" in m]
    assert len(refused) == 1, warnings_of(caplog)
    # A dashboard that takes the connection and never answers: the pass goes on.
    with socket.socket() as silent:
        silent.bind((HEAD_IP, 0))
        silent.listen()
        publish_head(paths, silent.getsockname()[1])
        provider.non_terminated_nodes({})
        assert provider.internal_ip(apps["worker-1"]) == "127.0.0.51"
    assert any("timed out" in m for m in warnings_of(caplog)), warnings_of(caplog)
    # Once Ray answers, its node list decides again.
    ray = ScriptedRay(cluster_token(paths))
    try:
        publish_head(paths, ray.port)
        ray.join("worker-1", "127.0.0.61")
        provider.non_terminated_nodes({})
        assert provider.internal_ip(apps["worker-1"]) == "127.0.0.61"
    finally:
        ray.close()
    assert any("Ray lists its nodes again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("token_file", "status"),
    [("missing", 401), ("another", 403)],
)
async def test_a_refused_ray_token_falls_back_to_the_records(
    idle_workspace: WorkspaceHandle,
    cml_client: CMLClient,
    paths: ClusterPaths,
    scripted_ray: ScriptedRay,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    token_file: str,
    status: int,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    token_path = tmp_path / "token"
    if token_file == "another":
        token_path.write_text("not-the-cluster-token-" + "0" * 40)
    environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    provider = make_provider(paths, idle_workspace, environ)
    apps = await start_cluster(idle_workspace, cml_client, paths, provider)
    write_record(paths, "worker-1", ip="127.0.0.51")
    scripted_ray.join("worker-1", "127.0.0.61")
    provider.non_terminated_nodes({})
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.51"
    refused = [m for m in warnings_of(caplog) if f"HTTP {status}" in m]
    assert len(refused) == 1, warnings_of(caplog)
    assert "not-the-cluster-token" not in caplog.text
    # With the cluster's token Ray's IP is used.
    token_path.write_text(cluster_token(paths))
    provider.non_terminated_nodes({})
    assert provider.internal_ip(apps["worker-1"]) == "127.0.0.61"
