"""The autoscaler's provider while the cluster is suspended (cluster.json `suspended`, in
the moment before the head stops it): a stopped worker stays (it is not deleted to be
replaced), and nothing is created or deleted; once active again it goes on."""

from __future__ import annotations

import json

from raycai_core.cluster.desired import write_desired
from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient
from raycai_core.launcher.render import render_cluster
from raycai_core.local import WorkspaceHandle
from raycai_core.naming import HEAD_NODE
from tests.fixtures.workspace import wait_for
from tests.test_autoscaler_provider import (
    autoscaled_spec,
    load_provider,
    make_provider,
    scale,
    workers_of,
)


async def test_provider_keeps_stopped_workers_and_changes_nothing_while_suspended(
    idle_workspace: WorkspaceHandle, cml_client: CMLClient
) -> None:
    handle = idle_workspace
    spec = autoscaled_spec()
    paths = render_cluster(handle.project_dir, spec).paths
    write_desired(paths, spec)
    ops = ClusterManager(cml_client, handle.project_dir)
    head = await cml_client.create_application(ops._request(spec, HEAD_NODE))
    paths.head_json.write_text(json.dumps({"ip": "127.0.0.42", "gcs_port": 6379}))
    provider = make_provider(load_provider(paths), paths, handle)
    scale(provider, add=2)
    first, second = workers_of(provider)

    write_desired(paths, spec, "suspended")
    await cml_client.stop_application(first)
    # The stopped worker drops out of the autoscaler's nodes once listed stopped...
    await wait_for(lambda: first not in workers_of(provider), timeout=20, interval=0.2)
    for _ in range(3):  # ...and no pass deletes it, nor the other, nor creates one
        scale(provider, add=1, delete=(second,))
    assert await listed_ids(cml_client) == {head.id, first, second}

    write_desired(paths, spec)  # active again: the stopped worker is replaced as usual

    async def first_deleted() -> bool:
        scale(provider)
        return first not in await listed_ids(cml_client)

    await wait_for(first_deleted, timeout=20, interval=0.2)
    await ops.observer.aclose()


async def listed_ids(cml: CMLClient) -> set[str]:
    return {a.id for a in await cml.list_applications({"name": "raycai-auto-"})}
