"""raycai's node provider for Ray's autoscaler, driven like Ray drives it (scripted, no Ray
cluster): against the real local workspace, from the files `render_cluster` writes.

The provider is loaded from the cluster directory, as the head's monitor loads it; its
requests are compared with raycai's own (ClusterManager._request) for the same node.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.launcher import autoscaling
from raycai_core.launcher.render import launcher_config, render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE, group_hash, group_node, subdomain
from raycai_core.spec import ClusterSpec, parse_spec
from tests.fixtures.workspace import RUNTIME, SERVES_HTTP, wait_for


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


def scale(
    provider: Any,
    add: int = 0,
    delete: tuple[str, ...] = (),
    groups: dict[str, int] | None = None,
) -> None:
    """One autoscaler pass as StandardAutoscaler makes it: read, decide, submit (`add`
    workers of the default group, or `groups`: how many to add of each node type)."""
    provider.non_terminated_nodes({})
    for node_type, count in ({"worker": add} if add else groups or {}).items():
        provider.create_node({}, {"ray-user-node-type": node_type}, count)
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


def grouped_spec(name: str = "grp") -> ClusterSpec:
    """Three groups: the default `worker` (autoscaled), `gpu` (autoscaled, an accelerator
    with its CML label, a custom resource, a label) and `fixed` (one worker, kept by the
    autoscaler at that count)."""
    gpu = {
        "min": 0,
        "max": 2,
        "cpu": 2,
        "memory": 2,
        "nvidia_gpu": 1,
        "accelerator": "L40S",
        "accelerator_label_id": "42",
        "resources": {"fast_disk": 1},
        "labels": {"tier": "gpu"},
    }
    workers = {
        "worker": {"min": 0, "max": 3, "cpu": 1, "memory": 1},
        "gpu": gpu,
        "fixed": {"count": 1, "cpu": 1, "memory": 1.5},
    }
    return parse_spec(
        {
            "name": name,
            "head": {"runtime_identifier": RUNTIME},
            "workers": workers,
            "autoscaling": {"idle_timeout_s": 60, "upscaling_speed": 2},
        }
    )


async def test_provider_requests_equal_raycais_own(
    tmp_path: Path, idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    one = autoscaled_spec(name="same-as-up", nvidia_gpu=0, memory=2.5)
    for spec in (one, grouped_spec("same-groups")):
        paths = render_cluster(idle_workspace.project_dir, spec).paths
        module = load_provider(paths)
        settings = json.loads((paths.root / "autoscaler.json").read_text())["provider"]["raycai"]
        for group in spec.group_names:
            for index in (1, 7, 123):
                node = group_node(group, index)
                ours = ops._request(spec, node).to_body(idle_workspace.project_id)
                assert module.worker_request(settings, idle_workspace.project_id, node) == ours
        with pytest.raises(ValueError, match="no worker group 'tpu'"):
            module.worker_request(settings, idle_workspace.project_id, "tpu-1")
    body = module.worker_request(settings, idle_workspace.project_id, "gpu-2")
    assert body["accelerator_label_id"] == "42" and body["environment"]["RAYCAI_GROUP"] == "gpu"
    assert body["subdomain"] == subdomain(idle_workspace.project_id, "same-groups", "gpu-2")
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


def test_one_node_type_per_group_with_its_bounds_and_resources(tmp_path: Path) -> None:
    from ray.autoscaler._private.util import validate_config

    spec = grouped_spec()
    rendered = render_cluster(tmp_path, spec)
    config = json.loads((rendered.paths.root / "autoscaler.json").read_text())
    validate_config(config)
    types = config["available_node_types"]
    assert list(types) == ["fixed", "gpu", "head", "worker"]  # sorted keys
    bounds = {name: (t["min_workers"], t["max_workers"]) for name, t in types.items()}
    assert bounds == {"head": (0, 0), "worker": (0, 3), "gpu": (0, 2), "fixed": (1, 1)}
    assert config["max_workers"] == 6
    assert (config["idle_timeout_minutes"], config["upscaling_speed"]) == (1.0, 2)
    gpu = spec.group("gpu")
    assert types["gpu"]["resources"] == {
        "CPU": 2,
        "memory": gpu.ray_memory_bytes,
        "GPU": 1,
        "accelerator_type:L40S": 1.0,
        "fast_disk": 1.0,
    }
    assert types["gpu"]["node_config"]["accelerator_label_id"] == "42"
    assert types["fixed"]["node_config"]["group"] == "fixed"
    # The launcher gives `ray start` the same resources (launcher.json's groups).
    launcher = json.loads(rendered.paths.launcher_json.read_text())
    assert launcher["groups"]["gpu"]["resources"] == {
        "accelerator_type:L40S": 1.0,
        "fast_disk": 1.0,
    }
    assert launcher["groups"]["gpu"]["labels"] == {"tier": "gpu"}
    settings = config["provider"]["raycai"]
    assert settings["groups"]["worker"]["subdomain_format"] == "ray-grp-{hash}-w{index}"
    assert settings["groups"]["gpu"]["subdomain_format"] == (
        f"ray-grp-{{hash}}-{group_hash('gpu')}w{{index}}"
    )
    # A scale moves one group's bounds: only autoscaler.json changes.
    again = render_cluster(tmp_path, spec.with_group_count("gpu", 1))
    assert again.changed == ("autoscaler.json",)
    moved = json.loads((rendered.paths.root / "autoscaler.json").read_text())
    assert moved["available_node_types"]["gpu"]["min_workers"] == 1
    assert moved["available_node_types"]["worker"]["min_workers"] == 0
    # Groups of fixed size only: no autoscaler.
    fixed = parse_spec(
        {
            "name": "nofly",
            "head": {"runtime_identifier": RUNTIME},
            "workers": {"a": {"count": 1}, "b": {"count": 2}},
        }
    )
    assert "autoscaler" not in launcher_config(fixed)
    assert "worker" not in launcher_config(fixed)  # no default group: no legacy entry
    assert not (render_cluster(tmp_path, fixed).paths.root / "autoscaler.json").exists()


async def test_scripted_passes_create_and_delete_workers_of_each_group(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = idle_workspace
    spec = grouped_spec()
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    ops = ClusterManager(cml_client, handle.project_dir)
    await cml_client.create_application(ops._request(spec, HEAD_NODE))
    provider = make_provider(load_provider(paths), paths, handle)

    # Ray asks for 2 GPU workers and 1 of the default group in one pass.
    scale(provider, groups={"gpu": 2, "worker": 1})
    workers = workers_of(provider)
    apps = {a.id: a for a in await cml_client.list_applications({"name": "raycai-grp-"})}
    nodes = {apps[i].environment["RAYCAI_NODE"]: i for i in workers}
    assert sorted(nodes) == ["gpu-1", "gpu-2", "worker-1"]
    assert {workers[i].type for i in workers} == {"gpu", "worker"}
    assert workers[nodes["gpu-1"]].type == "gpu" and workers[nodes["worker-1"]].type == "worker"
    for node, app_id in nodes.items():
        expected = ops._request(spec, node)
        app = apps[app_id]
        assert (app.name, app.subdomain, app.environment) == (
            expected.name,
            expected.subdomain,
            expected.environment,
        )
        assert (app.cpu, app.memory, app.nvidia_gpu) == (
            expected.cpu,
            expected.memory,
            expected.nvidia_gpu,
        )
        assert app.accelerator_label_id == expected.accelerator_label_id
    assert apps[nodes["gpu-1"]].accelerator_label_id == "42"

    # Deleting gpu-1 frees its name in its group only; the next GPU worker takes it.
    scale(provider, delete=(nodes["gpu-1"],))
    assert set(workers_of(provider)) == {nodes["gpu-2"], nodes["worker-1"]}
    scale(provider, groups={"gpu": 1})
    assert sorted(provider.nodes.values()) == ["gpu-1", "gpu-2", "head", "worker-1"]
    assert provider.free_nodes(1, "fixed") == ["fixed-1"]
    await ops.observer.aclose()


APPS_ROUTE = "GET /api/v2/projects/{project_id}/applications"


def list_requests(handle: WorkspaceHandle) -> int:
    """CML list-applications requests so far, as the workspace counts them."""
    stats = httpx.get(
        f"{handle.url}/_local/stats", headers={"Authorization": f"Bearer {handle.api_key}"}
    ).json()
    return int(stats["by_route"].get(APPS_ROUTE, 0))


def settled(provider: Any, count: int) -> bool:
    """A pass that lists `count` running applications and has nothing in flight."""
    provider.non_terminated_nodes({})
    statuses = [a.get("status") for a in provider.listed.values()]
    return (
        statuses == ["APPLICATION_RUNNING"] * count
        and not provider.creating
        and not provider.listing_stale()
    )


async def test_an_idle_provider_reuses_its_listing_and_lists_after_a_change(
    local_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = local_workspace
    spec = grouped_spec("cache")
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    for role in ("head", "worker"):  # stand-ins that answer HTTP: their apps get RUNNING
        paths.script(role).write_text(SERVES_HTTP)
    ops = ClusterManager(cml_client, handle.project_dir)
    await cml_client.create_application(ops._request(spec, HEAD_NODE))
    module = load_provider(paths)
    provider = make_provider(module, paths, handle)
    scale(provider, groups={"gpu": 1})
    await wait_for(lambda: settled(provider, 2), timeout=30, interval=0.2)

    # Idle: passes reuse the listing while it is at most LIST_MAX_AGE_S old.
    before, started = list_requests(handle), time.monotonic()
    for _ in range(5):
        scale(provider)
    idle_lists = list_requests(handle) - before
    assert idle_lists <= (time.monotonic() - started) / module.LIST_MAX_AGE_S
    # An older listing is replaced, once.
    provider.listed_at -= module.LIST_MAX_AGE_S + 1
    before = list_requests(handle)
    scale(provider)
    scale(provider)
    assert list_requests(handle) - before == 1

    # A pass that asked for a change makes the next pass list, whatever the listing's age.
    provider.listed_at = time.monotonic()
    scale(provider, groups={"worker": 1})
    before = list_requests(handle)
    provider.non_terminated_nodes({})
    assert list_requests(handle) - before == 1
    assert "worker-1" in {
        module.app_environment(a)["RAYCAI_NODE"] for a in provider.listed.values()
    }
    await wait_for(lambda: settled(provider, 3), timeout=30, interval=0.2)
    await ops.observer.aclose()


async def test_a_creation_from_a_reused_listing_lists_again_on_a_taken_name(
    local_workspace: WorkspaceHandle, cml_client: CMLClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone else created gpu-2 after the provider's listing: CML refuses the name (409),
    the provider lists again and creates what is still missing under free names."""
    handle = local_workspace
    spec = grouped_spec("taken")
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    for role in ("head", "worker"):
        paths.script(role).write_text(SERVES_HTTP)
    ops = ClusterManager(cml_client, handle.project_dir)
    await cml_client.create_application(ops._request(spec, HEAD_NODE))
    await cml_client.create_application(ops._request(spec, "gpu-1"))
    provider = make_provider(load_provider(paths), paths, handle)
    await wait_for(lambda: settled(provider, 2), timeout=30, interval=0.2)
    await cml_client.create_application(ops._request(spec, "gpu-2"))

    caplog.set_level(logging.INFO, logger="raycai_cml_provider")
    provider.listed_at = time.monotonic()  # a fresh enough listing, without gpu-2
    before = list_requests(handle)
    scale(provider, groups={"gpu": 2})  # Ray wants 3 GPU workers; it knows of gpu-1
    assert list_requests(handle) - before == 1  # the pass reused its listing, then relisted
    assert "listing again: a name was taken" in caplog.text
    apps = await cml_client.list_applications({"name": "raycai-taken-"})
    gpu = sorted(
        a.environment["RAYCAI_NODE"] for a in apps if a.name.startswith("raycai-taken-gpu")
    )
    assert gpu == ["gpu-1", "gpu-2", "gpu-3"]  # gpu-2 counted: one creation, not two
    assert provider.change_asked  # the next pass lists again
    await ops.observer.aclose()
