"""The rules the head's autoscaler provider repeats from the core, fed the same inputs.

`launcher/cml_provider.py` runs on the head from the cluster directory with the standard
library and Ray only (tests/test_head_programs.py: it imports nothing from raycai_core), so it
carries its own copies. Each test feeds the same answers (Ray's node list, CML's application
list and error bodies, the launchers' record files) to the core and to the rendered provider
and checks that both say the same, and what the rule says:

- node matching: raycai_core.ray.matching (cluster.view.merge_cluster uses it) vs the
  provider's `ray_node`, `recorded_ip` and `node_ip`, and the node list items they parse;
- an application's status, environment and created_at: cml.models.Application vs the
  provider's `normalise_status`, `app_environment` and `rfc3339_seconds`;
- grpc-gateway error bodies: CMLClient's CMLError vs the provider's CMLApiError, over HTTP;
- a node's worker group: naming.node_group and as_cluster_app vs the provider's node_group
  and app_group, and the launcher's node pattern and node_group.

Every case names the input that tells the rule from a plausible other one, so that a copy
drifting that way fails here.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from raycai_core.cluster.apps import as_cluster_app, group_by_cluster
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.ray_info import combine
from raycai_core.cluster.records import read_head_address, read_node_records
from raycai_core.cluster.view import created_at, merge_cluster, recorded_ip
from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.errors import CMLError
from raycai_core.cml.models import Application
from raycai_core.credentials import Credentials, Secret
from raycai_core.launcher import autoscaling
from raycai_core.launcher.render import render_cluster
from raycai_core.naming import HEAD_NODE, app_environment, app_name, node_group
from raycai_core.ray.matching import match_ray_node, node_ip, node_labels
from raycai_core.ray.parsers import parse_nodes
from raycai_core.spec import parse_spec
from tests.test_autoscaler_provider import load_provider

CLUSTER = "par"
CREATED = 1_790_000_000.0  # every application's creation, unix seconds
SPEC = parse_spec(
    {
        "name": CLUSTER,
        "head": {"runtime_identifier": "img"},
        "workers": {"min": 0, "max": 3, "cpu": 1, "memory": 1},
    }
)


def rfc3339(seconds: float) -> str:
    """CML's spelling of a time: `2026-09-21T14:13:20.000000Z`."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ray_item(
    node_id: str,
    ip: str,
    node: str | None,
    *,
    start: float = CREATED + 10,
    state: str = "ALIVE",
    cluster: str = CLUSTER,
) -> dict[str, Any]:
    """One item of Ray 2.60's `GET /api/v0/nodes?detail=true`; `node` None: no raycai labels
    (a node started by hand, or by a launcher older than the labels)."""
    labels = {"ray.io/node-id": node_id, **(node_labels(cluster, node) if node else {})}
    return {
        "node_id": node_id,
        "node_ip": ip,
        "is_head_node": node == "head",
        "state": state,
        "state_message": None if state == "ALIVE" else "Unexpected termination",
        "node_name": app_name(cluster, node or "x"),
        "resources_total": {"CPU": 1.0},
        "labels": labels,
        "start_time_ms": int(start * 1000),
        "end_time_ms": 0 if state == "ALIVE" else int(start * 1000) + 60_000,
    }


def envelope(items: list[dict[str, Any]]) -> dict[str, Any]:
    listing = {"total": len(items), "num_after_truncation": len(items), "result": items}
    return {"result": True, "msg": "", "data": {"result": {**listing, "num_filtered": len(items)}}}


def application(node: str, created: str | None) -> dict[str, Any]:
    """An application as CML API v2 lists it."""
    return {
        "id": f"app-{node}",
        "name": app_name(CLUSTER, node),
        "status": "APPLICATION_RUNNING",
        "environment": json.dumps(app_environment(CLUSTER, node)),
        "created_at": created,
    }


@dataclass
class Case:
    ray: list[dict[str, Any]]
    # node -> (its app's created_at, the Ray node id that is its own or None, its IP)
    expect: dict[str, tuple[str | None, str | None, str | None]]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodes/<node>.json
    head_json: dict[str, Any] | None = None


AT = rfc3339(CREATED)
CASES = {
    # A rule without the creation check (or matching by name) takes `old`, the previous
    # worker-2's node that Ray still lists ALIVE: its IP may be another pod's by now.
    "recreated worker, its new node not joined yet": Case(
        ray=[ray_item("old", "10.0.0.82", "worker-2", start=CREATED - 3600)],
        records={"worker-2": {"ip": "10.0.0.52", "started_at": CREATED + 2}},
        expect={"worker-2": (AT, None, "10.0.0.52")},
    ),
    # Newest first among those that started in time.
    "recreated worker, old and new node alive": Case(
        ray=[
            ray_item("old", "10.0.0.82", "worker-2", start=CREATED - 3600),
            ray_item("new", "10.0.0.62", "worker-2", start=CREATED + 20),
            ray_item("rejoined-before", "10.0.0.61", "worker-2", start=CREATED + 5),
        ],
        records={"worker-2": {"ip": "10.0.0.52", "started_at": CREATED + 2}},
        expect={"worker-2": (AT, "new", "10.0.0.62")},
    ),
    # 3 s before the creation is within the 5 s slack (clocks differ), 7 s is not: a rule
    # without the slack drops `skewed`, a wider one takes `early`.
    "the 5 s slack": Case(
        ray=[
            ray_item("skewed", "10.0.0.61", "worker-1", start=CREATED - 3),
            ray_item("early", "10.0.0.72", "worker-3", start=CREATED - 7),
        ],
        expect={"worker-1": (AT, "skewed", "10.0.0.61"), "worker-3": (AT, None, None)},
    ),
    # A rule that ignores the state takes the newer dead node.
    "a dead node newer than the alive one": Case(
        ray=[
            ray_item("dead", "10.0.0.71", "worker-1", start=CREATED + 50, state="DEAD"),
            ray_item("alive", "10.0.0.61", "worker-1", start=CREATED + 10),
        ],
        expect={"worker-1": (AT, "alive", "10.0.0.61")},
    ),
    "only a dead node": Case(
        ray=[ray_item("dead", "10.0.0.71", "worker-1", state="DEAD")],
        records={"worker-1": {"ip": "10.0.0.51", "started_at": CREATED + 1}},
        expect={"worker-1": (AT, None, "10.0.0.51")},
    ),
    # No labels: the provider reports the record's IP; a rule matching an unlabelled node
    # by name would report that node's (here another IP).
    "a node without labels": Case(
        ray=[ray_item("bare", "10.0.0.91", None)],
        records={"worker-1": {"ip": "10.0.0.51", "started_at": CREATED + 1}},
        expect={"worker-1": (AT, None, "10.0.0.51")},
    ),
    # Labelled for a cluster named `par-2`: a rule reading only raycai/node takes it.
    "another cluster's node of the same name": Case(
        ray=[ray_item("other", "10.0.0.99", "worker-1", cluster=f"{CLUSTER}-2")],
        expect={"worker-1": (AT, None, None)},
    ),
    # Equal start times: the highest node id, whatever Ray's order (a copy keeping Ray's
    # order takes `aa`).
    "equal start times": Case(
        ray=[
            ray_item("aa", "10.0.0.61", "worker-1", start=CREATED + 10),
            ray_item("bb", "10.0.0.62", "worker-1", start=CREATED + 10),
        ],
        expect={"worker-1": (AT, "bb", "10.0.0.62")},
    ),
    # Ray does not say when it started (0): it is not excluded.
    "an unknown start time": Case(
        ray=[ray_item("unknown", "10.0.0.61", "worker-1", start=0)],
        expect={"worker-1": (AT, "unknown", "10.0.0.61")},
    ),
    # No created_at on the application: nothing is excluded, newest first.
    "an application without created_at": Case(
        ray=[
            ray_item("old", "10.0.0.81", "worker-1", start=CREATED - 3600),
            ray_item("older", "10.0.0.82", "worker-1", start=CREATED - 7200),
        ],
        records={"worker-1": {"ip": "10.0.0.51", "started_at": CREATED - 3000}},
        expect={"worker-1": (None, "old", "10.0.0.81")},
    ),
    # A record left by the previous application of that name is not this one's: a rule
    # reading any record reports 10.0.0.52.
    "a stale worker record": Case(
        ray=[],
        records={"worker-2": {"ip": "10.0.0.52", "started_at": CREATED - 100}},
        expect={"worker-2": (AT, None, None)},
    ),
    # The head: Ray's labelled node, else head.json, else nodes/head.json (both written by
    # this application); a head.json of an earlier head application does not count.
    "the head listed by Ray": Case(
        ray=[ray_item("h", "10.0.0.44", "head")],
        head_json={"ip": "10.0.0.42", "started_at": CREATED + 1},
        records={"head": {"ip": "10.0.0.43", "started_at": CREATED + 1}},
        expect={"head": (AT, "h", "10.0.0.44")},
    ),
    "the head by head.json": Case(
        ray=[],
        head_json={"ip": "10.0.0.42", "started_at": CREATED + 1},
        records={"head": {"ip": "10.0.0.43", "started_at": CREATED + 1}},
        expect={"head": (AT, None, "10.0.0.42")},
    ),
    "the head by its record when head.json is an earlier head's": Case(
        ray=[],
        head_json={"ip": "10.0.0.42", "started_at": CREATED - 600},
        records={"head": {"ip": "10.0.0.43", "started_at": CREATED + 1}},
        expect={"head": (AT, None, "10.0.0.43")},
    ),
}


@pytest.fixture(scope="module")
def provider_module(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, dict]:
    """The rendered provider (as the head runs it) and its provider config."""
    paths = render_cluster(tmp_path_factory.mktemp("project"), SPEC).paths
    config = json.loads((paths.root / autoscaling.CONFIG_FILE).read_text())
    return load_provider(paths), config["provider"]


def write_files(paths: ClusterPaths, case: Case) -> None:
    paths.nodes_dir.mkdir(parents=True, exist_ok=True)
    for node, record in case.records.items():
        body = {"schema": 1, "node": node, "role": "worker", "phase": "joined", **record}
        paths.node_record(node).write_text(json.dumps(body))
    if case.head_json is not None:
        head = {"schema": 1, "gcs_port": 6379, "dashboard_port": 8265, **case.head_json}
        paths.head_json.write_text(json.dumps(head))


@pytest.mark.parametrize("name", list(CASES))
def test_core_and_provider_match_the_same_ray_node(
    name: str, provider_module: tuple[ModuleType, dict], tmp_path: Path
) -> None:
    case = CASES[name]
    module, config = provider_module
    paths = ClusterPaths(tmp_path, CLUSTER)
    write_files(paths, case)
    payload = envelope(case.ray)
    provider = module.CMLNodeProvider(
        config,
        CLUSTER,
        api=module.CMLApi("http://127.0.0.1:9", "unused", "p"),  # never called here
        cluster_dir=str(paths.root),
    )
    provider.ray_listing = provider.ray_nodes.parse(json.dumps(payload).encode())

    apps = {node: application(node, at) for node, (at, _, _) in case.expect.items()}
    members = group_by_cluster([Application.model_validate(a) for a in apps.values()])[CLUSTER]
    records, head = read_node_records(paths), read_head_address(paths)
    nodes = parse_nodes(payload)
    view = merge_cluster(CLUSTER, None, members, records, head, combine(nodes, None))
    for member in members:
        node, app = member.node, apps[member.node]
        _, want_id, want_ip = case.expect[node]
        created = created_at(member)
        alive = [n for n in nodes if n.alive]
        core = match_ray_node(alive, CLUSTER, node, created)
        core_record_ip = recorded_ip(node, member, records.get(node), head)
        head_side = provider.ray_node(node, app)
        assert (core.node_id if core else None) == want_id, node
        assert (head_side.node_id if head_side else None) == want_id, node
        assert provider.recorded_ip(node, app) == core_record_ip, node
        assert node_ip(nodes, CLUSTER, node, created, core_record_ip) == want_ip, node
        assert provider.node_ip(app["id"], node, app) == want_ip, node
        # The view's row carries the same node while it is alive.
        row = view.row(node)
        assert row is not None
        if want_id is not None:
            assert row.ray is not None and row.ray.node_id == want_id


def test_the_view_keeps_a_dead_node_and_finds_an_unlabelled_one_by_its_records_ip() -> None:
    """The core's view goes on where the provider (which needs alive nodes' IPs) stops: a
    dead node of this application still shows (its state, its logs), and a node without
    labels at the record's IP is this application's."""
    members = group_by_cluster(
        [
            Application.model_validate(application("worker-1", AT)),
            Application.model_validate(application("worker-2", AT)),
        ]
    )[CLUSTER]
    nodes = parse_nodes(
        envelope(
            [
                ray_item("dead", "10.0.0.71", "worker-1", state="DEAD"),
                ray_item("bare", "10.0.0.52", None),
                ray_item("bare-old", "10.0.0.52", None, start=CREATED - 3600),
            ]
        )
    )
    from raycai_core.cluster.records import NodeRecord

    records = {
        "worker-2": NodeRecord(
            node="worker-2", role="worker", phase="joined", ip="10.0.0.52", started_at=CREATED
        )
    }
    view = merge_cluster(CLUSTER, None, members, records, None, combine(nodes, None))
    worker_1, worker_2 = view.row("worker-1"), view.row("worker-2")
    assert worker_1 is not None and worker_1.ray is not None
    assert worker_1.ray.node_id == "dead" and not worker_1.joined
    assert worker_2 is not None and worker_2.ray is not None
    assert worker_2.ray.node_id == "bare" and worker_2.joined  # not the earlier `bare-old`


@pytest.mark.parametrize("name", list(CASES))
def test_node_list_items_parse_the_same(name: str, provider_module: tuple[ModuleType, dict]):
    """The provider keeps this cluster's alive labelled nodes; the core parses every node:
    for those, id, IP and start time agree (a copy reading `start_time_ms` as seconds, or
    `node_ip` from another field, fails here)."""
    module, _ = provider_module
    payload = envelope(CASES[name].ray)
    head_side = module.RayNodes("/nonexistent", CLUSTER).parse(json.dumps(payload).encode())
    seen = {
        (node, n.node_id, n.ip, n.started_at) for node, found in head_side.items() for n in found
    }
    core = {
        (n.labels["raycai/node"], n.node_id, n.node_ip, n.start_time)
        for n in parse_nodes(payload)
        if n.alive and n.labels.get("raycai/cluster") == CLUSTER and "raycai/node" in n.labels
    }
    assert seen == core


# -- CML's answers ---------------------------------------------------------------------------

STATUSES = [
    "APPLICATION_RUNNING",
    "APPLICATION_STARTING",
    "APPLICATION_FAILED",
    "APPLICATION_STOPPED",
    "APPLICATION_STOPPING",
    "running",
    " Running ",
    "application_failed",
    "APPLICATION_UNKNOWN",
    "APPLICATION_SCHEDULING",  # not a status either knows: unknown
    "",
    None,
    3,
]


@pytest.mark.parametrize("status", STATUSES)
def test_application_status_reads_the_same(
    status: object, provider_module: tuple[ModuleType, dict]
) -> None:
    module, _ = provider_module
    core = Application.model_validate({"id": "a", "status": status}).status.value
    assert module.normalise_status(status) == core


ENVIRONMENTS = [
    json.dumps(app_environment(CLUSTER, "worker-1")),
    app_environment(CLUSTER, "worker-1"),  # an object, as some versions send it
    json.dumps({"N": 1, "B": True}),  # values become strings
    "",
    "   ",
    "not json",
    json.dumps(["a", "list"]),
    None,
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_application_environment_reads_the_same(
    environment: object, provider_module: tuple[ModuleType, dict]
) -> None:
    module, _ = provider_module
    core = Application.model_validate({"id": "a", "environment": environment}).environment
    assert module.app_environment({"environment": environment}) == core


CREATED_ATS = [
    "2026-09-21T14:13:20.123456Z",
    "2026-09-21T14:13:20Z",
    "2026-09-21T16:13:20.5+02:00",  # an offset: the same instant as 14:13:20.5Z
    "2026-09-21T11:43:20-02:30",
    "",
    None,
]


@pytest.mark.parametrize("value", CREATED_ATS)
def test_application_created_at_reads_the_same(
    value: str | None, provider_module: tuple[ModuleType, dict]
) -> None:
    module, _ = provider_module
    created = Application.model_validate({"id": "a", "created_at": value}).created_at
    core = created.timestamp() if created is not None else None
    head_side = module.rfc3339_seconds(value)
    assert head_side == pytest.approx(core) if core is not None else head_side is None


# (status, content type, body): grpc-gateway's `{code, message, error}` with fields missing,
# and what a proxy in front of CML may answer instead.
ERRORS = [
    (404, "application/json", {"code": 5, "message": "application not found", "error": "x"}),
    (400, "application/json", {"code": 3, "error": "subdomain is not valid"}),
    (403, "application/json", {"code": 7}),  # only a code: `gRPC code 7`, not `7`
    (409, "application/json", {}),  # nothing: the status line's reason, not `{}`
    (400, "application/json", {"message": 5, "error": ""}),  # not text: the reason
    (401, "application/json", {"message": "  token\n expired  "}),  # one line in the log
    (404, "text/plain", ""),  # nothing at all: the reason, not `no details`
    (502, "text/html", "<html><body>Bad gateway " + "x" * 400 + "</body></html>"),
]


class Scripted(BaseHTTPRequestHandler):
    answer: tuple[int, str, Any] = (500, "text/plain", "")

    def do_GET(self) -> None:
        status, kind, body = self.answer
        data = (json.dumps(body) if kind == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def scripted_cml() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "kind", "body"), ERRORS, ids=[str(i) for i in range(len(ERRORS))]
)
async def test_cml_errors_read_the_same(
    status: int,
    kind: str,
    body: Any,
    scripted_cml: ThreadingHTTPServer,
    provider_module: tuple[ModuleType, dict],
) -> None:
    module, _ = provider_module
    Scripted.answer = (status, kind, body)
    url = f"http://127.0.0.1:{scripted_cml.server_address[1]}"
    credentials = Credentials(host=url, api_key=Secret("k"), project_id="p")
    async with CMLClient(credentials, retry=RetryPolicy(attempts=1)) as cml:
        with pytest.raises(CMLError) as core:
            await cml.list_applications({"name": "raycai-"})
    api = module.CMLApi(url, "k", "p")
    with pytest.raises(module.CMLApiError) as head_side:
        api.list_applications({"name": "raycai-"})
    assert head_side.value.status == core.value.status == status
    one_line = " ".join(core.value.server_message.split())[:300]
    assert str(head_side.value) == f"HTTP {status}: {one_line}"


NODE_NAMES = [
    "worker-1",
    "gpu-12",
    "a1-3",
    "abcdefghijkl-2",  # 12 characters: a group
    "abcdefghijklm-2",  # 13: not
    "head",
    "head-1",  # `head` names no group
    "Gpu-1",
    "gpu-0",
    "gpu",
    "gpu-1-2",
    "worker-01",
    "",
]


@pytest.fixture(scope="module")
def worker_launcher(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The rendered worker.py, imported (its main() is not run)."""
    paths = render_cluster(tmp_path_factory.mktemp("project"), SPEC).paths
    spec = importlib.util.spec_from_file_location("raycai_worker", paths.script("worker"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("node", NODE_NAMES)
def test_a_nodes_group_reads_the_same(
    node: str,
    provider_module: tuple[ModuleType, dict],
    worker_launcher: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """naming.node_group vs the provider's node_group and app_group (an application of the
    cluster, as the core's as_cluster_app reads it) and the launcher's node pattern."""
    module, _ = provider_module
    core = node_group(node)
    assert module.node_group(node) == core
    env = json.dumps({"RAYCAI_CLUSTER": CLUSTER, "RAYCAI_NODE": node})
    listed = {"id": "a", "name": app_name(CLUSTER, node), "environment": env}
    member = as_cluster_app(Application.model_validate(listed))
    assert module.app_group(listed) == (member.group if member else None)
    monkeypatch.delenv("RAYCAI_GROUP", raising=False)
    launcher_accepts = bool(worker_launcher.NODE_RE.match(node)) and not node.startswith("head-")
    assert launcher_accepts == (core is not None or node == HEAD_NODE)
    if core is not None:
        assert worker_launcher.node_group(node) == core
