"""The provider's question to Ray, asked of real Ray 2.60 (token auth on): the alive nodes
carrying raycai's labels, with the IPs Ray uses for them; a stopped node drops out.

A head and one worker started with the labels and names raycai's launchers give them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from raycai_core.launcher.render import render_cluster
from tests.fixtures.ray_nodes import RayNodeProcess, RayTestCluster, wait_until
from tests.test_autoscaler_provider import autoscaled_spec, load_provider

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

CLUSTER = "labelled"


class LabelledCluster(RayTestCluster):
    """Ray nodes started as raycai's launchers start them: `--labels raycai/cluster=<c>,
    raycai/node=<node>` (the node is the Ray node's name here)."""

    def _start(
        self, name: str, ip: str, args: list[str], *, is_head: bool, env: dict
    ) -> RayNodeProcess:
        labels = f"raycai/cluster={CLUSTER},raycai/node={name}"
        return super()._start(name, ip, [*args, "--labels", labels], is_head=is_head, env=env)


def test_real_ray_lists_the_labelled_alive_nodes(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))  # short unix socket paths
    cluster = LabelledCluster(root)
    try:
        head = cluster.start_head("127.0.0.2", "head")
        cluster.wait_gcs()
        worker = cluster.start_worker("127.0.0.3", "worker-1")
        cluster.wait_alive(head, worker)
        paths = render_cluster(tmp_path, autoscaled_spec(name=CLUSTER)).paths
        head_json = {"ip": cluster.head_ip, "dashboard_port": cluster.dashboard_port}
        paths.head_json.write_text(json.dumps(head_json))
        module = load_provider(paths)
        environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.token_path)}
        ray_nodes = module.RayNodes(str(paths.root), CLUSTER, environ=environ)

        listed: dict[str, Any] = ray_nodes.fetch()
        assert {node: [n.ip for n in found] for node, found in listed.items()} == {
            "head": ["127.0.0.2"],
            "worker-1": ["127.0.0.3"],
        }
        assert all(n.node_id and n.started_at for found in listed.values() for n in found)
        # Another cluster's provider finds none of them.
        assert module.RayNodes(str(paths.root), "other", environ=environ).fetch() == {}
        # Without the token Ray refuses: the provider says so and falls back.
        with pytest.raises(module.RayUnavailable, match="HTTP 401"):
            module.RayNodes(
                str(paths.root), CLUSTER, environ={"RAY_AUTH_TOKEN_PATH": "/nonexistent"}
            ).fetch()

        cluster.stop_node(worker)
        wait_until(
            lambda: "worker-1" not in ray_nodes.fetch(), 60, "worker-1 to leave Ray's alive list"
        )
        assert set(ray_nodes.fetch()) == {"head"}
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
