"""raycai's node provider for Ray's autoscaler, driven like Ray drives it (scripted, no Ray
cluster): against the real local workspace, from the files `render_cluster` writes.

The provider is loaded from the cluster directory, as the head's monitor loads it; its
requests are compared with raycai's own (ClusterManager._request) for the same node.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.launcher import autoscaling
from raycai_core.launcher.render import launcher_config, render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec, parse_spec
from tests.fixtures.workspace import RUNTIME, wait_for


def autoscaled_spec(name: str = "auto", **workers: Any) -> ClusterSpec:
    group = {"min": 0, "max": 3, "cpu": 1, "memory": 1, **workers}
    return parse_spec({"name": name, "head": {"runtime_identifier": RUNTIME}, "workers": group})


def load_provider(paths: ClusterPaths) -> ModuleType:
    """The rendered raycai_cml_provider.py, imported from the cluster directory."""
    spec = importlib.util.spec_from_file_location(
        "raycai_cml_provider", paths.root / autoscaling.PROVIDER_FILE
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload_env(handle: WorkspaceHandle) -> dict[str, str]:
    """What the local workspace gives its apps (and CML its workloads)."""
    return {
        "CDSW_APIV2_KEY": handle.workload_key,
        "CDSW_API_URL": f"{handle.url}/api/v1",
        "CDSW_DOMAIN": handle.url.split("://", 1)[1],
        "CDSW_PROJECT_ID": handle.project_id,
    }


def make_provider(module: ModuleType, paths: ClusterPaths, handle: WorkspaceHandle) -> Any:
    config = json.loads((paths.root / autoscaling.CONFIG_FILE).read_text())
    api = module.CMLApi.from_environment(workload_env(handle))
    return module.CMLNodeProvider(config["provider"], config["cluster_name"], api=api)


def write_record(paths: ClusterPaths, node: str, **fields: Any) -> None:
    record = {"schema": 1, "node": node, "started_at": time.time(), **fields}
    paths.node_record(node).write_text(json.dumps(record))


def workers_of(provider: Any) -> dict[str, Any]:
    ids = provider.non_terminated_nodes({})
    return {
        i: provider.node_data_dict[i] for i in ids if provider.node_data_dict[i].kind == "worker"
    }


def scale(provider: Any, add: int = 0, delete: tuple[str, ...] = ()) -> None:
    """One autoscaler pass as StandardAutoscaler makes it: read, decide, submit."""
    provider.non_terminated_nodes({})
    if add:
        provider.create_node({}, {"ray-user-node-type": "worker"}, add)
    for node_id in delete:
        provider.terminate_node(node_id)
    provider.post_process()


def test_rendered_config_is_accepted_by_rays_validation(tmp_path: Path) -> None:
    from ray.autoscaler._private.util import validate_config

    spec = autoscaled_spec(min=1, max=4, idle_timeout_s=30, upscaling_speed=2)
    rendered = render_cluster(tmp_path, spec)
    assert {"autoscaler.json", "raycai_cml_provider.py", "raycai_autoscaler.py"} <= set(
        rendered.changed
    )
    config = json.loads((rendered.paths.root / "autoscaler.json").read_text())
    validate_config(config)
    assert config["max_workers"] == 4 and config["idle_timeout_minutes"] == 0.5
    worker = config["available_node_types"]["worker"]
    assert (worker["min_workers"], worker["max_workers"]) == (1, 4)
    assert worker["resources"] == {"CPU": 1, "memory": spec.workers.ray_memory_bytes}
    assert config["provider"]["worker_liveness_check"] is False
    assert rendered.launcher["autoscaler"]["config"] == "autoscaler.json"
    # A scale moves min and max: only autoscaler.json changes (Ray re-reads it every pass).
    again = render_cluster(tmp_path, spec.with_workers(2))
    assert again.changed == ("autoscaler.json",)
    # A fixed-size cluster gets none of it.
    fixed = parse_spec({"name": "fixed", "head": {"runtime_identifier": RUNTIME}})
    assert "autoscaler" not in launcher_config(fixed)
    assert not (render_cluster(tmp_path, fixed).paths.root / "autoscaler.json").exists()


async def test_provider_requests_equal_raycais_own(
    tmp_path: Path, idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    spec = autoscaled_spec(name="same-as-up", nvidia_gpu=0, memory=2.5)
    paths = render_cluster(idle_workspace.project_dir, spec).paths
    module = load_provider(paths)
    settings = json.loads((paths.root / "autoscaler.json").read_text())["provider"]["raycai"]
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    for node in ("worker-1", "worker-7", "worker-123"):
        ours = ops._request(spec, node).to_body(idle_workspace.project_id)
        assert module.worker_request(settings, idle_workspace.project_id, node) == ours
    await ops.observer.aclose()


async def test_scripted_autoscaler_passes_create_list_and_delete_workers(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = idle_workspace  # apps stay STARTING: no process runs, the API is what counts
    spec = autoscaled_spec()
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    ops = ClusterManager(cml_client, handle.project_dir)
    head = await cml_client.create_application(ops._request(spec, HEAD_NODE))
    paths.head_json.write_text(json.dumps({"ip": "127.0.0.42", "gcs_port": 6379}))
    # Another cluster whose name starts the same is not ours.
    other = autoscaled_spec(name="auto-2")
    render_cluster(handle.project_dir, other)
    await cml_client.create_application(ops._request(other, "worker-1"))
    provider = make_provider(load_provider(paths), paths, handle)

    assert provider.non_terminated_nodes({}) == [head.id]
    assert provider.node_tags(head.id)["ray-node-type"] == "head"
    assert provider.internal_ip(head.id) == "127.0.0.42"

    scale(provider, add=2)
    workers = workers_of(provider)
    assert len(workers) == 2 and all(w.status == "starting" for w in workers.values())
    apps = {a.id: a for a in await cml_client.list_applications({"name": "raycai-auto-"})}
    created = sorted(apps[i].environment["RAYCAI_NODE"] for i in workers)
    assert created == ["worker-1", "worker-2"]
    for app_id in workers:
        node = apps[app_id].environment["RAYCAI_NODE"]
        expected = ops._request(spec, node)
        assert (apps[app_id].name, apps[app_id].subdomain) == (expected.name, expected.subdomain)
        assert apps[app_id].environment == expected.environment
    # Ray finds a node by the IP its launcher recorded (a record older than the app is not
    # this app's: its IP may belong to another node by now).
    by_node = {apps[i].environment["RAYCAI_NODE"]: i for i in workers}
    write_record(paths, "worker-1", ip="127.0.0.51")
    write_record(paths, "worker-2", ip="127.0.0.52", started_at=time.time() - 3600)
    provider.non_terminated_nodes({})
    assert provider.internal_ip(by_node["worker-1"]) == "127.0.0.51"
    assert provider.internal_ip(by_node["worker-2"]) is None

    # The autoscaler deletes worker-1: it is gone from the next pass at once, and a new
    # worker takes the lowest free name.
    scale(provider, delete=(by_node["worker-1"],))
    assert set(workers_of(provider)) == {by_node["worker-2"]}
    scale(provider, add=1)
    names = sorted(n for n in provider.nodes.values() if n != HEAD_NODE)
    assert names == ["worker-1", "worker-2"] and by_node["worker-1"] not in provider.nodes

    # A stopped worker is replaced: deleted, and the autoscaler's next request recreates it.
    await cml_client.stop_application(by_node["worker-2"])
    await wait_for(
        lambda: by_node["worker-2"] not in workers_of(provider), timeout=20, interval=0.2
    )
    remaining = await cml_client.list_applications({"name": "raycai-auto-"})
    assert by_node["worker-2"] not in {a.id for a in remaining}

    # Once `raycai down` has marked the cluster deleting, nothing is created any more.
    write_desired(paths, spec, "deleting")
    before = await cml_client.list_applications({"name": "raycai-auto-"})
    scale(provider, add=1)
    assert await cml_client.list_applications({"name": "raycai-auto-"}) == before
    await ops.observer.aclose()


class ListsDeletedApps:
    """A workspace whose deletes take effect later (CML may keep listing a deleted app)."""

    def __init__(self, apps: list[dict]) -> None:
        self.apps = apps
        self.project_id = "p"
        self.base_url = "http://workspace"
        self.deleted: list[str] = []

    def list_applications(self, search_filter: dict[str, str]) -> list[dict]:
        return [dict(a) for a in self.apps]

    def create_application(self, body: dict) -> dict:
        raise AssertionError("no creation expected")

    def delete_application(self, app_id: str) -> None:
        self.deleted.append(app_id)


def test_a_deleted_node_stays_out_until_cml_no_longer_lists_it(tmp_path: Path) -> None:
    paths = render_cluster(tmp_path, autoscaled_spec()).paths
    module = load_provider(paths)
    env = json.dumps({"RAYCAI_CLUSTER": "auto", "RAYCAI_NODE": "worker-1"})
    api = ListsDeletedApps([{"id": "w1", "status": "APPLICATION_RUNNING", "environment": env}])
    config = json.loads((paths.root / "autoscaler.json").read_text())
    provider = module.CMLNodeProvider(
        config["provider"], "auto", api=api, cluster_dir=str(paths.root)
    )
    assert provider.non_terminated_nodes({}) == ["w1"]
    scale(provider, delete=("w1",))
    assert api.deleted == ["w1"]
    assert provider.non_terminated_nodes({}) == []  # still listed, remembered as deleted
    assert provider.free_nodes(1) == ["worker-2"]  # its subdomain is still taken
    api.apps.clear()
    assert provider.non_terminated_nodes({}) == [] and provider.deleting == {}
    assert provider.free_nodes(1) == ["worker-1"]


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, "CDSW_APIV2_KEY"),
        ({"CDSW_APIV2_KEY": "k", "CDSW_PROJECT_ID": "p"}, "CDSW_API_URL or CDSW_DOMAIN"),
        ({"CDSW_APIV2_KEY": "k", "CDSW_DOMAIN": "ml.example.com"}, "CDSW_PROJECT_ID"),
    ],
)
def test_workload_credentials_say_what_is_missing(
    tmp_path: Path, environ: dict[str, str], missing: str
) -> None:
    module = load_provider(render_cluster(tmp_path, autoscaled_spec()).paths)
    with pytest.raises(module.NoCredentials, match=missing):
        module.workload_credentials(environ)
    full = {"CDSW_APIV2_KEY": "k", "CDSW_PROJECT_ID": "p"}
    assert module.workload_credentials({**full, "CDSW_DOMAIN": "ml.example.com"})[0] == (
        "https://ml.example.com"
    )
    local = {
        **full,
        "CDSW_DOMAIN": "127.0.0.1:8080",
        "CDSW_API_URL": "http://127.0.0.1:8080/api/v1",
    }
    assert module.workload_credentials(local)[0] == "http://127.0.0.1:8080"


def test_runner_without_a_key_says_autoscaling_is_off(tmp_path: Path) -> None:
    paths = render_cluster(tmp_path, autoscaled_spec()).paths
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(paths.root / "raycai_autoscaler.py"), "--address", "127.0.0.1:1",
         "--config", str(paths.root / "autoscaler.json")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "autoscaling off: the head application has no CDSW_APIV2_KEY" in done.stdout
    assert not (paths.root / "__pycache__").exists()
