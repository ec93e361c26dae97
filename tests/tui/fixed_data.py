"""Fixed, realistic data for snapshot tests: built from the core's own types, no clocks."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import Desired
from raycai_core.cluster.records import HeadAddress, NodeRecord
from raycai_core.cluster.types import ClusterSummary
from raycai_core.cluster.view import ClusterView, RayNodeInfo, merge_cluster
from raycai_core.cml.models import Application, Runtime
from raycai_core.naming import app_environment, app_name
from raycai_core.ray.matching import node_labels
from raycai_core.spec import spec_from_flags
from raycai_tui.services import Snapshot

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
GIB = 2**30
RUNTIME = (
    "docker.repository.cloudera.com/cloudera/cdsw/"
    "ml-runtime-pbj-workbench-python3.11-standard:2025.09.1-b5"
)
RUNTIMES = [
    Runtime(
        image_identifier=RUNTIME,
        editor="PBJ Workbench",
        kernel="Python 3.11",
        edition="Standard",
        full_version="2025.09.1-b5",
        status="ENABLED",
    ),
    Runtime(
        image_identifier=RUNTIME.replace("3.11", "3.10"),
        editor="PBJ Workbench",
        kernel="Python 3.10",
        edition="Standard",
        full_version="2025.09.1-b5",
        status="ENABLED",
    ),
]


def at(seconds_ago: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_ago, tz=timezone.utc)


def member(
    cluster: str, node: str, status: str, cpu: float, memory: float, age: float
) -> ClusterApp:
    app = Application(
        id=f"{cluster}-{node}-0001",
        name=app_name(cluster, node),
        subdomain=f"ray-{cluster}-1a2b3c-{'h' if node == 'head' else 'w' + node.split('-')[1]}",
        status=status,
        cpu=cpu,
        memory=memory,
        created_at=at(age + 20),
        starting_at=at(age + 10),
        running_at=at(age) if status == "running" else None,
        environment=app_environment(cluster, node),
        runtime_identifier=RUNTIME,
    )
    return ClusterApp(app=app, cluster=cluster, node=node)


def desired(name: str, workers: int, created_ago: float) -> Desired:
    spec = spec_from_flags(
        name=name, runtime=RUNTIME, workers=workers, cpu=2, memory=8, head_cpu=2, head_memory=8
    )
    return Desired(spec=spec, created_at=NOW - created_ago, updated_at=NOW - created_ago)


def demo_members() -> list[ClusterApp]:
    return [
        member("demo", "head", "running", 2, 8, 3600),
        member("demo", "worker-1", "running", 2, 8, 3590),
        member("demo", "worker-2", "starting", 2, 8, 30),
    ]


def snapshot() -> Snapshot:
    members = {
        "demo": demo_members(),
        "etl-nightly": [
            member("etl-nightly", "head", "failed", 4, 16, 7200),
            member("etl-nightly", "worker-1", "running", 4, 16, 7200),
        ],
        "scratch": [member("scratch", "head", "running", 1, 2, 120)],
    }
    summaries = [
        ClusterSummary("demo", desired("demo", 2, 3700), members["demo"], 1),
        ClusterSummary("etl-nightly", desired("etl-nightly", 1, 90000), members["etl-nightly"], 0),
        ClusterSummary("scratch", desired("scratch", 0, 150), members["scratch"], 0),
    ]
    return Snapshot(members=members, summaries=summaries, taken_at=NOW)


def record(node: str, phase: str, error: str | None = None) -> NodeRecord:
    return NodeRecord(
        node=node,
        role="head" if node == "head" else "worker",
        phase=phase,
        error=error,
        updated_at=NOW - 1,
    )


def ray_node(
    cluster: str, node: str, cpu: tuple[float, float], memory_gb: float, head: bool = False
) -> RayNodeInfo:
    """`node`'s Ray node as its launcher starts it (named after its app, with raycai's labels)."""
    name = app_name(cluster, node)
    return RayNodeInfo(
        node_id=f"{name}-id",
        node_name=name,
        labels=node_labels(cluster, node),
        state="ALIVE",
        is_head=head,
        cpu=cpu,
        gpu=(0.0, 0.0),
        memory=(0.0, memory_gb * 0.7 * GIB),
        start_time=NOW - 3000,
    )


def demo_view() -> ClusterView:
    records = {
        "head": record("head", "running"),
        "worker-1": record("worker-1", "joined"),
        "worker-2": record("worker-2", "waiting-for-head"),
    }
    head = HeadAddress(
        ip="10.42.7.15",
        gcs_port=6379,
        dashboard_port=8100,
        client_port=10001,
        started_at=NOW - 3500,
        incarnation="9f1c2a7b",
        ray_version="2.60.0",
    )
    nodes = [
        ray_node("demo", "head", (0.0, 2.0), 8, head=True),
        ray_node("demo", "worker-1", (1.5, 2.0), 8),
    ]
    view = merge_cluster("demo", desired("demo", 2, 3700), demo_members(), records, head, nodes)
    # worker-2's launcher started after its application: not "waiting for CML".
    return dataclasses.replace(view, observed_at=NOW)


def cpu_history() -> list[float]:
    return [0, 0, 0.5, 1, 1, 1.5, 2, 2, 1.5, 1.5, 1, 1.5, 1.5, 1.5]


# -- a cluster with two worker groups (CPU workers, and GPU workers kept by the autoscaler) --

TRAIN_GROUPS = [
    "worker:count=2,cpu=4,memory=16",
    "gpu:min=0,max=4,cpu=8,memory=32,gpu=1,accelerator=L40S,accelerator_label=12",
]


def train_desired(created_ago: float = 5400) -> Desired:
    spec = spec_from_flags(
        name="train", runtime=RUNTIME, groups=TRAIN_GROUPS, head_cpu=2, head_memory=8
    )
    return Desired(spec=spec, created_at=NOW - created_ago, updated_at=NOW - created_ago)


def train_members() -> list[ClusterApp]:
    gpu = [
        member("train", "gpu-1", "running", 8, 32, 900),
        member("train", "gpu-2", "starting", 8, 32, 15),
    ]
    gpu = [dataclasses.replace(m, app=m.app.model_copy(update={"nvidia_gpu": 1})) for m in gpu]
    return [
        member("train", "head", "running", 2, 8, 5300),
        member("train", "worker-1", "running", 4, 16, 5290),
        member("train", "worker-2", "running", 4, 16, 5290),
        *gpu,
    ]


def grouped_snapshot() -> Snapshot:
    """The clusters of `snapshot()` and `train`, whose workers come in two groups."""
    base = snapshot()
    members = {**base.members, "train": train_members()}
    summary = ClusterSummary("train", train_desired(), members["train"], 3)
    return Snapshot(members=members, summaries=[*base.summaries, summary], taken_at=NOW)


def train_view() -> ClusterView:
    from raycai_core.cluster.records import AutoscalerRecord

    head_record = dataclasses.replace(
        record("head", "running"), autoscaler=AutoscalerRecord("running", since=NOW - 5200)
    )
    records = {
        "head": head_record,
        "worker-1": record("worker-1", "joined"),
        "worker-2": record("worker-2", "joined"),
        "gpu-1": record("gpu-1", "joined"),
    }
    head = HeadAddress(
        ip="10.42.7.21",
        gcs_port=6379,
        dashboard_port=8100,
        client_port=10001,
        started_at=NOW - 5200,
        incarnation="3b7e11c0",
        ray_version="2.60.0",
    )
    gpu_node = ray_node("train", "gpu-1", (6.0, 8.0), 32)
    nodes = [
        ray_node("train", "head", (0.0, 2.0), 8, head=True),
        ray_node("train", "worker-1", (4.0, 4.0), 16),
        ray_node("train", "worker-2", (1.0, 4.0), 16),
        dataclasses.replace(gpu_node, gpu=(1.0, 1.0), start_time=NOW - 890),
    ]
    desired = train_desired()
    return merge_cluster("train", desired, train_members(), records, head, nodes, now=NOW)
