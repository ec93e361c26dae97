"""The observer's light Ray ask (raycai-tui's cluster screen, two ticks in three): the node
list only, joined with the last usage answer while the same nodes are alive; usage asked
again as soon as they change. Against stand_in_ray's dashboard (Ray 2.60's envelopes) served
in this process, counting the requests."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest

from raycai_core.cluster.observe import Observer
from raycai_core.cluster.records import HeadAddress
from raycai_core.cml.client import CMLClient
from tests.fixtures.stand_in_ray import Gcs, dashboard_handler, node_of


class CountingRay:
    def __init__(self) -> None:
        self.gcs = Gcs(node_of(["--node-name", "raycai-demo-head"], is_head=True), None)
        self.asked: Counter[str] = Counter()
        base = dashboard_handler(self.gcs)
        outer = self

        class Counting(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                outer.asked[self.path.split("?")[0]] += 1
                super().do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def head(self) -> HeadAddress:
        port = self.server.server_address[1]
        return HeadAddress("127.0.0.1", 6379, port, 10001, 0.0, "one")

    def counts(self) -> tuple[int, int]:
        return self.asked["/api/v0/nodes"], self.asked["/api/cluster_status"]


@pytest.fixture
def ray() -> Iterator[CountingRay]:
    ray = CountingRay()
    yield ray
    ray.server.shutdown()
    ray.server.server_close()


async def test_usage_is_reused_only_while_the_same_nodes_are_alive(
    ray: CountingRay, tmp_path: Path
) -> None:
    observer = Observer(cast(CMLClient, None), tmp_path)  # no CML call in ray_nodes
    try:
        nodes, error = await observer.ray_nodes("demo", ray.head, reuse_usage=True)
        assert error is None and ray.counts() == (1, 1)  # nothing to reuse yet: both asked
        assert [n.cpu for n in nodes] == [(0.0, 1.0)]

        nodes, error = await observer.ray_nodes("demo", ray.head, reuse_usage=True)
        assert error is None and ray.counts() == (2, 1)  # the nodes only
        assert [n.cpu for n in nodes] == [(0.0, 1.0)]  # with the last usage

        ray.gcs.add(
            node_of(["--node-name", "raycai-demo-worker-1", "--num-cpus", "2"], is_head=False)
        )
        nodes, error = await observer.ray_nodes("demo", ray.head, reuse_usage=True)
        assert error is None and ray.counts() == (4, 2)  # a new node: usage asked at once
        assert sorted(n.cpu for n in nodes) == [(0.0, 1.0), (0.0, 2.0)]

        await observer.ray_nodes("demo", ray.head)  # the default asks for both, always
        assert ray.counts() == (5, 3)
    finally:
        await observer.aclose()
