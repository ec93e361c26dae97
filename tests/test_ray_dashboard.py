"""RayClient: parsers on real (trimmed) Ray 2.60 answers, then a real token-auth cluster.

The live tests share one head (127.0.0.2) and worker (127.0.0.3) started on first use,
labelled as raycai's launchers label nodes (the autoscaler provider's question to real Ray is
asked of them); the dead-node test starts and kills its own extra worker (127.0.0.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from raycai_core.credentials import Secret
from raycai_core.ray.client import RayClient, normalise_base_url
from raycai_core.ray.errors import (
    RayDashboardAuthError,
    RayDashboardError,
    RayDashboardServerError,
    RayDashboardUnreachable,
    RayLogStreamLost,
)
from raycai_core.ray.parsers import (
    LineSplitter,
    parse_cluster_usage,
    parse_log_listing,
    parse_nodes,
    ray_camel_case,
)
from tests.fixtures.ray_nodes import (
    OBJECT_STORE_MEMORY,
    LabelledCluster,
    RayNodeProcess,
    RayTestCluster,
    free_port,
    group_members,
)

HEAD_ID = "a20b843ac675b0a2bd606803d894da6c4040c8ee07d146a94a831bbf"
WORKER_ID = "0ef9ab085404fc83c628c8065fc1fd439043900fa2722e64707871f5"

# -- samples captured from a live 2.60 head (ids kept, lists trimmed) ------------------------

NODES_ANSWER = {
    "result": True,
    "msg": "",
    "data": {
        "result": {
            "total": 2,
            "num_after_truncation": 2,
            "num_filtered": 2,
            "result": [
                {
                    "node_id": WORKER_ID,
                    "node_ip": "127.0.0.3",
                    "is_head_node": False,
                    "state": "DEAD",
                    "state_message": "Expected termination: received SIGTERM",
                    "node_name": "raycai-x-worker-1",
                    "resources_total": {
                        "node:127.0.0.3": 1.0,
                        "memory": 1073741824.0,
                        "CPU": 1.0,
                        "object_store_memory": 7359562137.0,
                        "GPU": 1.0,
                    },
                    "labels": {"ray.io/node-id": WORKER_ID},
                    "start_time_ms": 1795673817915,
                    "end_time_ms": 1795673834964,
                },
                {
                    "node_id": HEAD_ID,
                    "node_ip": "127.0.0.2",
                    "is_head_node": True,
                    "state": "ALIVE",
                    "state_message": None,
                    "node_name": "raycai-x-head",
                    "resources_total": {
                        "memory": 2147483648.0,
                        "CPU": 2.0,
                        "node:127.0.0.2": 1.0,
                        "object_store_memory": 7415286988.0,
                        "node:__internal_head__": 1.0,
                    },
                    "labels": {"ray.io/node-id": HEAD_ID, "raycai-node": "head"},
                    "start_time_ms": 1795673815704,
                    "end_time_ms": 0,
                },
            ],
            "partial_failure_warning": "",
            "warnings": None,
        }
    },
}

# The first seconds: the monitor runs but has no node yet; before that, clusterStatus is null.
STATUS_STARTING = {
    "result": True,
    "msg": "Got cluster status.",
    "data": {
        "autoscalingStatus": None,
        "autoscalingError": None,
        "clusterStatus": {
            "gcsRequestTime": 0.0011,
            "time": 1795673812.1519437,
            "monitorPid": 37,
            "loadMetricsReport": {
                "usage": {},
                "resourceDemand": [],
                "pgDemand": [],
                "requestDemand": [],
                "nodeTypes": [],
                "headIp": None,
                "usageByNode": {},
                "nodeTypeMapping": None,
                "idleTimeMap": None,
            },
        },
    },
}
STATUS_NONE = {
    "result": True,
    "msg": "Got cluster status.",
    "data": {"autoscalingStatus": None, "autoscalingError": None, "clusterStatus": None},
}

# A task holds 1 CPU + 1 raycai_slot; a 64-CPU task and a placement group wait.
STATUS_BUSY = {
    "result": True,
    "msg": "Got cluster status.",
    "data": {
        "autoscalingStatus": "Cluster status: 0 nodes\n...",
        "autoscalingError": None,
        "clusterStatus": {
            "time": 1795674185.4737763,
            "autoscalerReport": {"activeNodes": {"nodeA20B843Ac675": 1}, "legacy": True},
            "loadMetricsReport": {
                "usage": {
                    "CPU": [1.0, 3.0],
                    "node:InternalHead": [0.0, 1.0],
                    "memory": [0.0, 2147483648.0],
                    "objectStoreMemory": [0.0, 209715200.0],
                    "node:127.0.0.2": [0.0, 1.0],
                    "node:127.0.0.3": [0.0, 1.0],
                    "raycaiSlot": [1.0, 2.0],
                    "GPU": [0.0, 1.0],
                },
                "resourceDemand": [[{"CPU": 64.0}, 1]],
                "pgDemand": [
                    [
                        {
                            "bundles": [[{"CPU": 32.0}, 1], [{"CPU": 1.0, "GPU": 1.0}, 1]],
                            "strategy": "STRICT_SPREAD",
                        },
                        1,
                    ]
                ],
                "requestDemand": [],
                "nodeTypes": [
                    [
                        {
                            "memory": 1073741824.0,
                            "node:127.0.0.2": 1.0,
                            "node:__internal_head__": 1.0,
                            "CPU": 2.0,
                            "object_store_memory": 104857600.0,
                        },
                        1,
                    ],
                    [
                        {
                            "CPU": 1.0,
                            "node:127.0.0.3": 1.0,
                            "memory": 1073741824.0,
                            "raycai_slot": 2.0,
                            "GPU": 1.0,
                            "object_store_memory": 104857600.0,
                        },
                        1,
                    ],
                ],
                "headIp": None,
                "usageByNode": {
                    HEAD_ID: {
                        "CPU": [0.0, 2.0],
                        "node:InternalHead": [0.0, 1.0],
                        "memory": [0.0, 1073741824.0],
                        "objectStoreMemory": [0.0, 104857600.0],
                        "node:127.0.0.2": [0.0, 1.0],
                    },
                    WORKER_ID: {
                        "node:127.0.0.3": [0.0, 1.0],
                        "memory": [0.0, 1073741824.0],
                        "CPU": [1.0, 1.0],
                        "objectStoreMemory": [0.0, 104857600.0],
                        "raycaiSlot": [1.0, 2.0],
                        "GPU": [0.0, 1.0],
                    },
                },
                "nodeTypeMapping": None,
                "idleTimeMap": None,
            },
        },
    },
}

LOGS_ANSWER = {
    "result": True,
    "msg": "",
    "data": {
        "result": {
            "internal": [
                "nsight/",
                "log_monitor.err",
                "debug_state.txt",
                "events/",
                "old/",
                "log_monitor.out",
                "ray_process_exit.log",
            ],
            "agent": ["runtime_env_agent.log", "dashboard_agent.out", "dashboard_agent.log"],
            "raylet": ["raylet.err", "raylet.out"],
        }
    },
}


# -- pure unit tests ------------------------------------------------------------------------


def test_parse_nodes_head_first_with_times_and_resources():
    head, worker = parse_nodes(NODES_ANSWER)
    assert head.is_head and head.alive and head.node_name == "raycai-x-head"
    assert head.node_id == HEAD_ID and head.node_ip == "127.0.0.2"
    assert head.end_time is None and head.start_time == pytest.approx(1795673815.704)
    assert head.labels["raycai-node"] == "head"
    assert head.resources_total["CPU"] == 2.0
    assert not worker.is_head and not worker.alive and worker.state == "DEAD"
    assert worker.state_message == "Expected termination: received SIGTERM"
    assert worker.end_time == pytest.approx(1795673834.964)
    assert worker.resources_total["GPU"] == 1.0


def test_parse_cluster_usage_maps_camel_case_back_and_drops_node_markers():
    usage = parse_cluster_usage(STATUS_BUSY)
    assert set(usage.resources) == {"CPU", "GPU", "memory", "object_store_memory", "raycai_slot"}
    assert (usage.cpu.used, usage.cpu.total, usage.cpu.available) == (1.0, 3.0, 2.0)
    assert usage.memory.total == 2 * 2**30  # bytes
    assert usage.object_store_memory.total == 200 * 2**20
    assert usage.resources["raycai_slot"].fraction == 0.5
    assert usage.by_node[WORKER_ID]["CPU"].used == 1.0
    assert usage.by_node[WORKER_ID]["raycai_slot"].total == 2.0
    assert set(usage.by_node[HEAD_ID]) == {"CPU", "memory", "object_store_memory"}
    task, group = usage.demand
    assert (task.kind, task.shape, task.count) == ("task", {"CPU": 64.0}, 1)
    assert group.kind == "placement_group" and group.strategy == "STRICT_SPREAD"
    assert group.shape == {"CPU": 33.0, "GPU": 1.0}
    assert group.bundles == (({"CPU": 32.0}, 1), ({"CPU": 1.0, "GPU": 1.0}, 1))
    assert usage.report_time == pytest.approx(1795674185.47, abs=0.01)
    assert usage.age(now=1795674190.4737763) == pytest.approx(5.0)


def test_parse_cluster_usage_during_start_up():
    for answer in (STATUS_NONE, STATUS_STARTING):
        usage = parse_cluster_usage(answer)
        assert usage.resources == {} and usage.by_node == {} and usage.demand == []
        assert usage.cpu.total == 0.0 and usage.gpu.fraction == 0.0
    assert parse_cluster_usage(STATUS_NONE).age() is None
    assert parse_cluster_usage(STATUS_STARTING).report_time == pytest.approx(1795673812.15)


def test_ray_camel_case_matches_ray():
    assert ray_camel_case("object_store_memory") == "objectStoreMemory"
    assert ray_camel_case("node:__internal_head__") == "node:InternalHead"
    assert ray_camel_case("CPU") == "CPU"


def test_parse_log_listing_drops_directories():
    listing = parse_log_listing(LOGS_ANSWER)
    assert listing["raylet"] == ["raylet.err", "raylet.out"]
    assert "old/" not in listing["internal"] and "debug_state.txt" in listing["internal"]


def test_line_splitter_joins_split_lines_and_characters():
    splitter = LineSplitter()
    text = "alpha\nbeta\r\ndéjà vu\n\ntail".encode()
    cut = text.index("é".encode()) + 1  # inside the two bytes of "é"
    lines = []
    for chunk in (text[:3], text[3:cut], text[cut:]):
        lines += splitter.feed(chunk)
    assert lines == ["alpha", "beta", "déjà vu", ""]
    assert splitter.flush() == "tail"
    assert splitter.flush() is None


def test_line_splitter_cuts_a_line_that_never_ends():
    splitter = LineSplitter(max_line=10)
    lines = []
    for _ in range(5):
        lines += splitter.feed(b"x" * 7)
    assert lines == ["x" * 10] * 3
    assert splitter.flush() == "xxxxx"


def test_normalise_base_url():
    assert normalise_base_url("127.0.0.2:8265/") == "http://127.0.0.2:8265"
    assert normalise_base_url("https://x.example.com/") == "https://x.example.com"


def _mock(status: int, body: bytes | str, headers: dict | None = None) -> httpx.MockTransport:
    content = body.encode() if isinstance(body, str) else body

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    return httpx.MockTransport(handler)


async def test_error_mapping_without_a_server():
    secret = "s3cr3t-token-value"
    cases = [
        (
            401,
            "Unauthorized: Missing authentication token",
            RayDashboardAuthError,
            "did not receive",
        ),
        (403, "Forbidden: Invalid authentication token", RayDashboardAuthError, "not this"),
        (
            500,
            "500 Internal Server Error\n\nServer got itself in trouble",
            RayDashboardServerError,
            "is the node dead",
        ),
        (302, "", RayDashboardError, "login page"),
        (200, "<html>sign in</html>", RayDashboardError, "not JSON"),
        (200, '{"data": 1}', RayDashboardError, "Ray 2.60 dashboard"),
    ]
    for status, body, cls, words in cases:
        transport = _mock(status, body, {"location": "https://sso.example.com/"})
        async with RayClient("http://ray", token=secret, transport=transport) as ray:
            with pytest.raises(cls) as caught:
                await ray.list_logs(HEAD_ID)
        assert words in str(caught.value), (status, str(caught.value))
        assert caught.value.status == status
        assert secret not in str(caught.value) and secret not in repr(caught.value)


async def test_token_echoed_by_a_server_is_scrubbed():
    secret = Secret("echoed-token-123")
    transport = _mock(500, "bad header Bearer echoed-token-123")
    async with RayClient("http://ray", token=secret, transport=transport) as ray:
        with pytest.raises(RayDashboardServerError) as caught:
            await ray.tail_log(HEAD_ID, "raylet.out")
    assert "echoed-token-123" not in str(caught.value)
    assert "********" in caught.value.server_message


async def test_an_empty_200_for_a_missing_file_is_checked_against_the_listing():
    # Ray 2.60 sometimes answers a missing file with an empty 200 instead of a 500.
    listed: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v0/logs":
            assert request.url.params["glob"] == "odd[[]1].log"  # escaped for Ray's glob
            return httpx.Response(
                200, json={"result": True, "msg": "", "data": {"result": {"internal": listed}}}
            )
        return httpx.Response(200, content=b"")

    transport = httpx.MockTransport(handler)
    async with RayClient("http://ray", token="t", transport=transport) as ray:
        with pytest.raises(RayDashboardServerError) as caught:
            await ray.tail_log(HEAD_ID, "odd[1].log")
        assert "not found" in str(caught.value)
        with pytest.raises(RayDashboardServerError):
            async for _ in ray.stream_log(HEAD_ID, "odd[1].log"):
                pass
        listed.append("odd[1].log")
        assert await ray.tail_log(HEAD_ID, "odd[1].log") == ""
        assert [line async for line in ray.stream_log(HEAD_ID, "odd[1].log")] == []


# -- live cluster ---------------------------------------------------------------------------

HEAD_RESOURCES = {"num_cpus": 2, "num_gpus": 0, "memory": 2**30}
WORKER_RESOURCES = {"num_cpus": 1, "num_gpus": 1, "memory": 2**30, "resources": {"raycai_slot": 2}}


@dataclass
class Live:
    cluster: RayTestCluster
    head: RayNodeProcess
    worker: RayNodeProcess
    ids: dict[str, str]  # node name -> node id

    @property
    def token(self) -> str:
        return self.cluster.token


class _LazyCluster:
    """Starts the module's cluster on first use (after `private_netns` allowed it)."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.failure: str | None = None
        self.root: Path | None = None

    def get(self) -> Live:
        if self.failure:
            pytest.fail(f"the test cluster did not start: {self.failure}")
        if self.live is None:
            self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short socket paths
            # Labelled as raycai's launchers label nodes: the provider's question below.
            cluster = LabelledCluster(self.root)
            try:
                head = cluster.start_head("127.0.0.2", "head", **HEAD_RESOURCES)
                cluster.wait_gcs()
                worker = cluster.start_worker("127.0.0.3", "worker-1", **WORKER_RESOURCES)
                ids = cluster.wait_alive(head, worker)
            except Exception as exc:
                self.failure = str(exc)
                cluster.stop_all()
                raise
            self.live = Live(cluster, head, worker, ids)
        return self.live

    def close(self) -> None:
        if self.live is not None:
            self.live.cluster.stop_all()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def _lazy_cluster() -> Iterator[_LazyCluster]:
    lazy = _LazyCluster()
    yield lazy
    lazy.close()


@pytest.fixture
def live(private_netns: None, _lazy_cluster: _LazyCluster) -> Live:
    return _lazy_cluster.get()


@pytest.fixture
async def ray(live: Live) -> AsyncIterator[RayClient]:
    async with RayClient(live.cluster.dashboard_url, token=Secret(live.token)) as client:
        yield client


async def _eventually(probe, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


@pytest.mark.ray
async def test_nodes_lists_head_and_worker(live: Live, ray: RayClient):
    nodes = [n for n in await ray.nodes() if n.alive]
    assert [n.node_name for n in nodes] == ["head", "worker-1"]
    head, worker = nodes
    assert head.is_head and not worker.is_head
    assert (head.node_id, worker.node_id) == (live.ids["head"], live.ids["worker-1"])
    assert (head.node_ip, worker.node_ip) == ("127.0.0.2", "127.0.0.3")
    assert head.start_time and head.end_time is None and head.state_message is None
    assert worker.resources_total == {
        "CPU": 1.0,
        "GPU": 1.0,
        "memory": float(2**30),
        "raycai_slot": 2.0,
        "object_store_memory": float(OBJECT_STORE_MEMORY),
        "node:127.0.0.3": 1.0,
    }
    assert head.resources_total["CPU"] == 2.0 and "GPU" not in head.resources_total
    assert head.resources_total["memory"] == float(2**30)
    assert [n.node_name for n in await ray.nodes(alive_only=True)] == ["head", "worker-1"]


# Holds one CPU (and one raycai_slot) and asks for what the cluster cannot give.
DRIVER = """
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)

@ray.remote(num_cpus=1, resources={"raycai_slot": 1})
def hold():
    time.sleep(120)

@ray.remote(num_cpus=64)
def never():
    pass

refs = [hold.remote(), never.remote()]
group = ray.util.placement_group([{"CPU": 32}], strategy="PACK")
time.sleep(120)
"""


@pytest.mark.ray
async def test_cluster_usage_totals_and_a_held_cpu(live: Live, ray: RayClient):
    async def complete():
        usage = await ray.cluster_usage()
        return usage if set(usage.by_node) >= set(live.ids.values()) else None

    usage = await _eventually(complete, 30, "both nodes in the cluster status")
    assert usage.cpu.total == 3.0 and usage.gpu.total == 1.0
    assert usage.memory.total == 2 * 2**30
    assert usage.object_store_memory.total == 2 * OBJECT_STORE_MEMORY
    assert usage.resources["raycai_slot"].total == 2.0
    assert usage.by_node[live.ids["worker-1"]]["GPU"].total == 1.0
    assert usage.age() is not None

    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DRIVER,
        live.cluster.gcs_address,
        env=live.cluster.env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        async def busy():
            usage = await ray.cluster_usage()
            kinds = {d.kind for d in usage.demand}
            return usage if usage.cpu.used >= 1 and kinds >= {"task", "placement_group"} else None

        usage = await _eventually(busy, 40, "the driver's task and demand in the status")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGTERM)
        await asyncio.wait_for(driver.wait(), 20)
    assert usage.resources["raycai_slot"].used == 1.0
    task = next(d for d in usage.demand if d.kind == "task")
    assert task.shape == {"CPU": 64.0} and task.count == 1
    group = next(d for d in usage.demand if d.kind == "placement_group")
    assert group.strategy == "PACK" and group.shape == {"CPU": 32.0}


@pytest.mark.ray
async def test_logs_listing_and_tail(live: Live, ray: RayClient):
    worker_id = live.ids["worker-1"]
    listing = await ray.list_logs(worker_id)
    assert {"raylet.out", "raylet.err"} <= set(listing["raylet"])
    assert all(not f.endswith("/") for files in listing.values() for f in files)
    assert await ray.list_logs(worker_id, glob="raylet*") == {
        "raylet": ["raylet.err", "raylet.out"]
    }

    tail = await ray.tail_log(worker_id, "raylet.out", lines=5)
    assert 0 < len(tail.splitlines()) <= 5

    (live.worker.logs_dir / "raycai-tail.log").write_text("one\ntwo\nthree\n")
    assert await ray.tail_log(worker_id, "raycai-tail.log", lines=2) == "two\nthree\n"

    with pytest.raises(RayDashboardServerError) as caught:
        await ray.tail_log(worker_id, "no-such.log")
    # Ray 2.60 answers a missing file with a 500, or (seen once in CI) an empty 200 that the
    # client checks against the node's listing (no HTTP status then): "not found" either way.
    assert caught.value.status in (500, None) and "not found" in str(caught.value)


@pytest.mark.ray
async def test_stream_yields_appended_lines(live: Live, ray: RayClient):
    path = live.head.logs_dir / "raycai-stream.log"
    path.write_bytes(b"")
    received: asyncio.Queue[str] = asyncio.Queue()

    async def follow() -> None:
        async for line in ray.stream_log(live.ids["head"], path.name, lines=10, interval=0.1):
            await received.put(line)

    follower = asyncio.create_task(follow())
    try:
        # Separate writes, so that chunks split a line and a UTF-8 character.
        for part in (b"alpha\nbe", b"ta\ngam", b"ma\nd\xc3", b"\xa9j\xc3\xa0\n"):
            with path.open("ab") as f:
                f.write(part)
            await asyncio.sleep(0.3)
        lines = [await asyncio.wait_for(received.get(), 20) for _ in range(4)]
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert lines == ["alpha", "beta", "gamma", "déjà"]


@pytest.mark.ray
async def test_token_missing_wrong_and_never_shown(live: Live):
    url = live.cluster.dashboard_url
    async with RayClient(url) as anonymous:
        with pytest.raises(RayDashboardAuthError) as missing:
            await anonymous.nodes()
    assert missing.value.status == 401 and "none was given" in str(missing.value)

    wrong = "wrong-token-0123456789"
    async with RayClient(url, token=wrong) as client:
        with pytest.raises(RayDashboardAuthError) as refused:
            await client.cluster_usage()
        assert refused.value.status == 403 and "not this cluster's token" in str(refused.value)
        assert wrong not in repr(client)

    errors: list[BaseException] = [missing.value, refused.value]
    async with RayClient(url, token=live.token) as client:
        assert len(await client.nodes(alive_only=True)) >= 2
        with pytest.raises(RayDashboardServerError) as server:
            await client.tail_log(live.ids["head"], "no-such.log")
        errors.append(server.value)
        shown = [repr(client), str(client)]
    for error in errors:
        shown += [str(error), repr(error), "".join(traceback.format_exception(error))]
    for text in shown:
        assert live.token not in text and wrong not in text


async def test_unreachable_address_fails_fast():
    port = free_port("127.0.0.9")  # bound then closed: nothing listens there
    async with RayClient(f"127.0.0.9:{port}", token="t0ken-value") as client:
        started = time.monotonic()
        with pytest.raises(RayDashboardUnreachable) as caught:
            await client.nodes()
        assert time.monotonic() - started < 5
        with pytest.raises(RayDashboardUnreachable):
            await client.list_jobs()
        with pytest.raises(RayDashboardUnreachable) as streaming:
            async for _ in client.stream_log(HEAD_ID, "raylet.out"):
                pass
    assert not isinstance(streaming.value, RayLogStreamLost)
    assert "connection refused" in str(caught.value) and f"127.0.0.9:{port}" in str(caught.value)
    assert "t0ken-value" not in str(caught.value)


@pytest.mark.ray
async def test_the_providers_question_lists_the_labelled_alive_nodes(live: Live, tmp_path: Path):
    """The autoscaler provider's question to real Ray 2.60 (token auth on): the alive nodes
    carrying raycai's labels, with the IPs Ray uses for them (a stopped node dropping out:
    the next test)."""
    ray_nodes, module = provider_nodes(live, tmp_path)
    root = ray_nodes.cluster_dir
    listed = await asyncio.to_thread(ray_nodes.fetch)
    assert {node: [n.ip for n in found] for node, found in listed.items()} == {
        "head": ["127.0.0.2"],
        "worker-1": ["127.0.0.3"],
    }
    assert all(n.node_id and n.started_at for found in listed.values() for n in found)
    # Another cluster's provider finds none of them.
    other = module.RayNodes(root, "other", environ=token_environ(live))
    assert await asyncio.to_thread(other.fetch) == {}
    # Without the token Ray refuses: the provider says so and falls back.
    refused = module.RayNodes(
        root, LabelledCluster.cluster_label, environ={"RAY_AUTH_TOKEN_PATH": "/nonexistent"}
    )
    with pytest.raises(module.RayUnavailable, match="HTTP 401"):
        await asyncio.to_thread(refused.fetch)


def token_environ(live: Live) -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(live.cluster.token_path)}


def provider_nodes(live: Live, tmp_path: Path) -> tuple[Any, Any]:
    """The head-side provider's RayNodes for the labelled cluster, and its module."""
    import json

    from raycai_core.launcher.render import render_cluster
    from tests.test_autoscaler_provider import autoscaled_spec, load_provider

    name = LabelledCluster.cluster_label
    paths = render_cluster(tmp_path / "project", autoscaled_spec(name=name)).paths
    head_json = {"ip": live.cluster.head_ip, "dashboard_port": live.cluster.dashboard_port}
    paths.head_json.write_text(json.dumps(head_json))
    module = load_provider(paths)
    return module.RayNodes(str(paths.root), name, environ=token_environ(live)), module


@pytest.mark.ray
async def test_killed_node_turns_dead_and_its_logs_are_gone(
    live: Live, ray: RayClient, tmp_path: Path
):
    cluster = live.cluster
    ray_nodes, _ = provider_nodes(live, tmp_path)
    extra = cluster.start_worker("127.0.0.4", "worker-2", num_cpus=1)
    try:
        node_id = (await asyncio.to_thread(cluster.wait_alive, extra))["worker-2"]
        assert "worker-2" in await asyncio.to_thread(ray_nodes.fetch)
        (extra.logs_dir / "raycai-cut.log").write_text("hello\n")
        stream = ray.stream_log(node_id, "raycai-cut.log", lines=5, interval=0.1)
        assert await asyncio.wait_for(anext(stream), 20) == "hello"

        pgid = extra.process.pid
        await asyncio.to_thread(cluster.stop_node, extra)
        assert not group_members(pgid)
        with pytest.raises(RayLogStreamLost) as cut:
            await asyncio.wait_for(anext(stream), 20)
        assert node_id[:12] in str(cut.value) and "raycai-cut.log" in str(cut.value)
        await stream.aclose()
    finally:
        if extra in cluster.nodes:
            await asyncio.to_thread(cluster.stop_node, extra)

    async def dead():
        nodes = {n.node_name: n for n in await ray.nodes()}
        return nodes if nodes["worker-2"].state == "DEAD" else None

    nodes = await _eventually(dead, 20, "worker-2 to be DEAD")

    # The provider's question no longer lists it (it would count as a node to replace).
    async def gone_from_the_provider():
        return "worker-2" not in await asyncio.to_thread(ray_nodes.fetch)

    await _eventually(gone_from_the_provider, 60, "worker-2 to leave the provider's list")
    gone = nodes["worker-2"]
    assert gone.node_id == node_id and gone.end_time and not gone.alive
    assert "SIGTERM" in (gone.state_message or "")
    states = [n.state for n in nodes.values()]
    assert states.count("ALIVE") == 2 and "DEAD" in states

    with pytest.raises(RayDashboardServerError) as tail:
        await ray.tail_log(node_id, "raylet.out")
    assert "dead" in str(tail.value)
    with pytest.raises(RayDashboardServerError) as listing:
        await ray.list_logs(node_id)
    assert "dead" in str(listing.value)
