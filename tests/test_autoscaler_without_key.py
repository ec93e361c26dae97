"""A head without the platform's workload key (CDSW_APIV2_KEY) cannot run Ray's autoscaler:
it says so and the cluster runs at its minimum size. The decision is the head launcher's,
before Ray's autoscaler would start, so the stand-in Ray shows it (real Ray's autoscaler,
with a key: tests/test_autoscaler_ray.py)."""

from __future__ import annotations

import asyncio

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_node_record
from raycai_core.local import WorkspaceHandle
from tests.helpers import SMALL_NODES, cluster_apps, nodes_of, raycai, status_json
from tests.tui.support import fake_ray

pytestmark = pytest.mark.integration

__all__ = ["fake_ray"]  # the fixture

NAME = "nokey"


def test_without_a_key_autoscaling_is_off_and_the_cluster_runs_at_its_minimum(
    fake_ray: WorkspaceHandle,
) -> None:
    handle = fake_ray
    handle.update_config(workload_key=False)
    raycai(handle, "up", NAME, "--min-workers", "1", "--max-workers", "2", *SMALL_NODES)
    record = read_node_record(ClusterPaths(handle.project_dir, NAME), "head")
    assert record is not None and record.autoscaler is not None
    assert record.autoscaler.state == "off"
    assert "CDSW_APIV2_KEY" in (record.autoscaler.reason or "")
    apps = asyncio.run(cluster_apps(handle))
    assert nodes_of(apps, NAME) == ["head", "worker-1"]
    status = status_json(handle, NAME)
    assert status["autoscaler"]["state"] == "off"
    assert "CDSW_APIV2_KEY" in status["autoscaler"]["reason"]
    assert status["nodes_alive"] == 2
    assert "autoscaler  off" in raycai(handle, "status", NAME).stdout
    raycai(handle, "down", NAME, "--yes")
    assert nodes_of(asyncio.run(cluster_apps(handle)), NAME) == []
