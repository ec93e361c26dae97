"""The autoscaler's provider pauses while a rolling update runs (rolling.json `running`,
fresh): it neither creates nor deletes workers, and goes on once the update is done."""

from __future__ import annotations

import json
import time

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.launcher.render import render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE
from tests.test_autoscaler_provider import (
    autoscaled_spec,
    load_provider,
    make_provider,
    scale,
    workers_of,
)


async def test_provider_creates_and_deletes_nothing_while_a_rolling_update_runs(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = idle_workspace
    spec = autoscaled_spec()
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    ops = ClusterManager(cml_client, handle.project_dir)
    await cml_client.create_application(ops._request(spec, HEAD_NODE))
    paths.head_json.write_text(json.dumps({"ip": "127.0.0.42", "gcs_port": 6379}))
    module = load_provider(paths)
    provider = make_provider(module, paths, handle)
    scale(provider, add=1)
    (first,) = workers_of(provider)

    record = paths.root / "rolling.json"
    record.write_text(json.dumps({"schema": 1, "state": "running", "updated_at": time.time()}))
    scale(provider, add=1, delete=(first,))
    assert list(workers_of(provider)) == [first]  # nothing created, nothing deleted

    # A record its process stopped rewriting long ago does not pause the provider.
    stale = time.time() - module.ROLLING_FRESH_S - 1
    record.write_text(json.dumps({"schema": 1, "state": "running", "updated_at": stale}))
    assert not provider.rolling_update()
    record.write_text(json.dumps({"schema": 1, "state": "done", "updated_at": time.time()}))
    scale(provider, add=1)
    assert len(workers_of(provider)) == 2
    await ops.observer.aclose()
