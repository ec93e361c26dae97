"""Worker groups in the core: each group's application requests, created on the real local
workspace (sizes, runtime, accelerator label, RAYCAI_GROUP)."""

from __future__ import annotations

from typing import Any

from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE, app_name, subdomain
from raycai_core.spec import ClusterSpec, parse_spec
from tests.fixtures.workspace import RUNTIME

OTHER_RUNTIME = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-other:1"


def two_groups(name: str = "duo", **data: Any) -> ClusterSpec:
    return parse_spec(
        {
            "name": name,
            "head": {"runtime_identifier": RUNTIME, "cpu": 1, "memory": 1},
            "workers": {
                "data": {"count": 2, "cpu": 1, "memory": 1, **data},
                "gpu": {
                    "count": 1,
                    "cpu": 2,
                    "memory": 3,
                    "nvidia_gpu": 1,
                    "accelerator": "L40S",
                    "accelerator_label_id": "42",
                },
            },
        }
    )


async def test_each_groups_request_and_the_application_created_from_it(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    spec = two_groups()
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    project = idle_workspace.project_id
    gpu = ops._request(spec, "gpu-1")
    assert (gpu.name, gpu.subdomain) == (
        app_name("duo", "gpu-1"),
        subdomain(project, "duo", "gpu-1"),
    )
    assert (gpu.cpu, gpu.memory, gpu.nvidia_gpu) == (2, 3, 1)
    assert gpu.runtime_identifier == RUNTIME  # the head's, as the group names none
    assert gpu.accelerator_label_id == "42"
    assert gpu.environment["RAYCAI_GROUP"] == "gpu" and gpu.environment["RAYCAI_NODE"] == "gpu-1"
    assert gpu.script.endswith("worker.py")
    cpu = ops._request(spec, "data-2")
    assert (cpu.cpu, cpu.memory, cpu.nvidia_gpu, cpu.accelerator_label_id) == (1, 1, 0, "")
    assert "accelerator_label_id" not in cpu.to_body(project)
    assert ops._request(spec, HEAD_NODE).accelerator_label_id == ""
    # The workspace keeps the label the request carried.
    (idle_workspace.project_dir / gpu.script).parent.mkdir(parents=True, exist_ok=True)
    created = await cml_client.create_application(gpu)
    assert created.accelerator_label_id == "42"
    assert created.environment["RAYCAI_GROUP"] == "gpu"
    await ops.observer.aclose()


async def test_a_group_with_its_own_runtime(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    spec = two_groups(runtime_identifier=OTHER_RUNTIME)
    ops = ClusterManager(cml_client, idle_workspace.project_dir)
    assert ops._request(spec, "data-1").runtime_identifier == OTHER_RUNTIME
    assert ops._request(spec, "gpu-1").runtime_identifier == RUNTIME
    await ops.observer.aclose()
