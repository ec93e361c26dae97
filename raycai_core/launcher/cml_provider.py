"""raycai's node provider for Ray's autoscaler: the nodes are this cluster's CML applications.

Copied by raycai into the cluster directory as `raycai_cml_provider.py` (edits are
overwritten); Ray's monitor loads it from there (`provider.module` in autoscaler.json), so it
depends on the standard library and Ray only, never on how raycai was installed.

Built on BatchingNodeProvider as KubeRay's provider is: each autoscaler pass starts with the
cluster's applications (`get_node_data`) and ends with at most one batch of creations and
deletions (`submit_scale_request`). Node types are worker groups (`worker` for the default
group): Ray asks for a number of workers per group, and each is created with the same name
(`<group>-<k>`, the lowest free k of its group), subdomain, environment, script, sizes and
accelerator label as raycai's own, so `raycai list/status/logs/down` see them as usual.

Listing economy: demand comes from Ray's load metrics, not from CML, so a pass reuses the
last listing while it is at most LIST_MAX_AGE_S old, unless the previous pass asked for a
change, a creation or deletion is in flight, or an application is not running. A creation
made from a reused listing that CML refuses as taken (409) lists again and retries.

Ray's v1 autoscaler matches a node to its raylet by IP, so a node's IP is the one Ray itself
lists for the alive Ray node carrying the node's labels
(`raycai/cluster=<cluster>`, `raycai/node=<node>`; one `GET /api/v0/nodes` on the head's
dashboard per pass), else the one its launcher recorded in nodes/<node>.json (the head's in
head.json) while Ray does not list it (yet) or the dashboard does not answer.

Credentials are the head application's own workload credentials (CDSW_APIV2_KEY and
CDSW_API_URL or CDSW_DOMAIN), as cmlapi.default_client() reads them; nothing else.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, NamedTuple

from ray.autoscaler.batching_node_provider import (
    BatchingNodeProvider,
    NodeData,
    ScaleRequest,
)
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    STATUS_UPDATE_FAILED,
)

logger = logging.getLogger(__name__)

SCHEMA = 1  # of the `raycai` section of the provider config
HEAD_NODE = "head"
HEAD_TYPE = "head"
WORKER_TYPE = "worker"
DEFAULT_GROUP = "worker"
# Node k of a worker group (raycai_core.naming: `<group>-<k>`, never `head-<k>`).
GROUP_NODE_RE = re.compile(r"^([a-z][a-z0-9]{0,11})-([1-9][0-9]*)$")
# A pass reuses the last listing of the cluster's applications while it is at most this old
# and nothing is changing (an idle cluster lists about 6 times a minute, not 30).
LIST_MAX_AGE_S = 10.0
# A created application CML does not list yet still counts (and takes its name) this long.
CREATING_TTL_S = 60.0
SUBDOMAIN_MAX = 63
PAGE_SIZE = 1000
REQUEST_TIMEOUT_S = 30.0
# A worker whose application failed or stopped is replaced; when replacements keep
# failing (a broken runtime, a quota never met), creations wait longer each time.
REPLACE_BACKOFF_S = (5.0, 300.0)
# A rolling update's record not rewritten for this long belongs to a process that died: the
# provider stops waiting for it (raycai_core/cluster/rolling_state.py).
ROLLING_FRESH_S = 1800.0
LOG_PREFIX = "raycai-provider:"
# Labels every raycai launcher gives `ray start` (template.py: LABEL_PREFIX).
CLUSTER_LABEL = "raycai/cluster"
NODE_LABEL = "raycai/node"
# The head's dashboard answers on the head itself: a pass must not wait on it for long.
RAY_TIMEOUT_S = 2.0
RAY_NODES_LIMIT = 1000
# A record or Ray node that started before its application was created belongs to an
# earlier application of the same name (clocks of the workspace and the nodes may differ).
# The matching rule is raycai_core.ray.matching's, copied (tests/test_head_parity.py).
CLOCK_SLACK_S = 5.0
RFC3339_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


class NoCredentials(Exception):
    """The head application has no workload credentials; the message says which is missing."""


class CMLApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def workload_credentials(environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(API base URL, API v2 key, project id) from the variables CML gives every workload.

    The base URL comes from CDSW_API_URL (`<scheme>://<domain>/api/v1`, which keeps the
    scheme), else https://CDSW_DOMAIN.
    """
    key = (environ.get("CDSW_APIV2_KEY") or "").strip()
    api_url = (environ.get("CDSW_API_URL") or "").strip()
    domain = (environ.get("CDSW_DOMAIN") or "").strip()
    project = (environ.get("CDSW_PROJECT_ID") or "").strip()
    missing = []
    if not key:
        missing.append("CDSW_APIV2_KEY (the workload's API v2 key)")
    if not api_url and not domain:
        missing.append("CDSW_API_URL or CDSW_DOMAIN (the workspace address)")
    if not project:
        missing.append("CDSW_PROJECT_ID")
    if missing:
        raise NoCredentials("the head application has no " + " and no ".join(missing))
    if api_url:
        base = api_url.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")]
    else:
        base = domain if "://" in domain else "https://" + domain
    return base.rstrip("/"), key, project


def normalise_status(value: object) -> str:
    """`APPLICATION_RUNNING`, `running`, `Running` -> `running` (`unknown` otherwise)."""
    text = str(value or "").strip().lower()
    text = text.removeprefix("application_")
    known = ("starting", "running", "stopping", "stopped", "failed")
    return text if text in known else "unknown"


def app_environment(app: Mapping[str, Any]) -> dict[str, str]:
    """An Application's `environment` (a JSON-encoded string in API v2, an object in some)."""
    raw = app.get("environment")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def rfc3339_seconds(value: object) -> float | None:
    """`2026-01-02T03:04:05.123456Z` -> unix seconds (None when absent or unreadable)."""
    text = str(value or "").strip()
    match = RFC3339_RE.match(text)
    if not match:
        return None
    parts = [int(p) for p in match.groups()[:6]]
    seconds = calendar.timegm((*parts, 0, 0, 0)) + float(match.group(7) or 0.0)
    zone = match.group(8)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


def record_seconds(value: object) -> float | None:
    """A record's unix time as raycai_core.cluster.records reads it (None when unreadable)."""
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def started_in_time(started: float | None, created: float | None) -> bool:
    """Started no earlier than the application's creation (minus the slack); an unknown time
    (None or 0) on either side does not exclude (raycai_core.ray.matching.started_in_time)."""
    return not created or not started or started >= created - CLOCK_SLACK_S


def launcher_ip(
    records: list[tuple[str | None, float | None]], created: float | None
) -> str | None:
    """The IP of the first launcher record `(ip, started_at)` written by this application
    (raycai_core.ray.matching.launcher_ip)."""
    for ip, started in records:
        if ip and started_in_time(started, created):
            return ip
    return None


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def desired_state(cluster_dir: str) -> str | None:
    """cluster.json's `state` as raycai_core.cluster.desired reads it ("active" when absent):
    None without the file, "corrupt" for a file or state it cannot read (parity-tested)."""
    desired = read_json(os.path.join(cluster_dir, "cluster.json"))
    if desired is None:
        return None
    state = desired.get("state", "active")
    return state if state in ("active", "suspended", "deleting") else "corrupt"


class CMLApi:
    """The few API v2 calls the provider makes, over urllib (no third-party client)."""

    def __init__(self, base_url: str, key: str, project_id: str) -> None:
        self.base_url = base_url
        self.project_id = project_id
        self._key = key

    def __repr__(self) -> str:
        return f"CMLApi(base_url={self.base_url!r}, project_id={self.project_id!r})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CMLApi:
        base, key, project = workload_credentials(os.environ if environ is None else environ)
        return cls(base, key, project)

    def _call(
        self, method: str, path: str, query: dict | None = None, body: dict | None = None
    ) -> dict:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self._key)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "raycai-autoscaler")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise CMLApiError(exc.code, _error_message(exc.read(), str(exc.reason or ""))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CMLApiError(0, f"cannot reach {self.base_url}: {reason}") from None
        if not payload.strip():
            return {}
        try:
            value = json.loads(payload)
        except ValueError:
            raise CMLApiError(0, f"{method} {path}: the answer is not JSON") from None
        return value if isinstance(value, dict) else {}

    def _apps_path(self) -> str:
        return "/api/v2/projects/" + urllib.parse.quote(self.project_id, safe="") + "/applications"

    def list_applications(self, search_filter: dict[str, str]) -> list[dict]:
        apps: list[dict] = []
        token = ""
        while True:
            query = {"search_filter": json.dumps(search_filter), "page_size": str(PAGE_SIZE)}
            if token:
                query["page_token"] = token
            page = self._call("GET", self._apps_path(), query)
            apps.extend(a for a in page.get("applications") or [] if isinstance(a, dict))
            token = str(page.get("next_page_token") or "")
            if not token:
                return apps

    def create_application(self, body: dict) -> dict:
        return self._call("POST", self._apps_path(), body=body)

    def delete_application(self, app_id: str) -> None:
        self._call("DELETE", self._apps_path() + "/" + urllib.parse.quote(app_id, safe=""))


def _error_message(raw: bytes, reason: str = "") -> str:
    """grpc-gateway's `{code, message, error}` (any may be missing) read as the core reads it
    (raycai_core.cml.errors.message_from_body, with CMLClient's fallbacks: a body that is not
    JSON is its text, a JSON body without a message is the status line's reason), as one
    line of at most 300 characters."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    message = (text[:200] if body is None else reason) or reason
    if isinstance(body, dict):
        code = body.get("code")
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                message = value.strip()
                break
        else:
            if isinstance(code, int):
                message = f"gRPC code {code}"
    return " ".join(message.split())[:300] or "no details"


class RayNode(NamedTuple):
    """An alive Ray node of this cluster, as the head's dashboard lists it (a NamedTuple: a
    dataclass needs its module in sys.modules, which a loader by file path may not do)."""

    node_id: str
    ip: str
    started_at: float | None  # unix seconds (start_time_ms), None when Ray does not say


class RayUnavailable(Exception):
    """Ray's node list could not be had this pass; the message says why (no secrets)."""


class RayNodes:
    """Which alive Ray node carries each raycai node's labels: one `GET /api/v0/nodes` (Ray's
    state API) on the head's dashboard, with the cluster's Ray token. Ray's monitor hands its
    provider no GCS client, and Ray's own clients are private; the dashboard's REST answer is
    the documented one, and urllib needs nothing beyond the standard library."""

    def __init__(
        self,
        cluster_dir: str,
        cluster: str,
        environ: Mapping[str, str] | None = None,
        timeout: float = RAY_TIMEOUT_S,
    ) -> None:
        self.cluster_dir = cluster_dir
        self.cluster = cluster
        self.environ = os.environ if environ is None else environ
        self.timeout = timeout
        # The head is reached directly: a workload's HTTP(S)_PROXY must not carry this call.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def dashboard_url(self) -> str:
        head = read_json(os.path.join(self.cluster_dir, "head.json")) or {}
        ip, port = head.get("ip"), head.get("dashboard_port")
        if not ip or not isinstance(port, int) or isinstance(port, bool):
            raise RayUnavailable("head.json has no dashboard address yet")
        host = f"[{ip}]" if ":" in str(ip) else str(ip)
        return f"http://{host}:{port}"

    def token(self) -> str | None:
        """The cluster's Ray token as Ray's own processes find it (RAY_AUTH_TOKEN_PATH, which
        the head launcher sets), else the cluster's auth_token; None with auth disabled."""
        if self.environ.get("RAY_AUTH_MODE") == "disabled":
            return None
        path = self.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(
            self.cluster_dir, "auth_token"
        )
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except OSError:
            return None

    def fetch(self) -> dict[str, list[RayNode]]:
        """raycai node name -> the alive Ray nodes carrying its labels, newest first."""
        url = self.dashboard_url()
        query = {
            "detail": "true",
            "limit": str(RAY_NODES_LIMIT),
            # Dead nodes stay listed (up to a thousand): ask for the alive ones only.
            "filter_keys": "state",
            "filter_predicates": "=",
            "filter_values": "ALIVE",
        }
        request = urllib.request.Request(url + "/api/v0/nodes?" + urllib.parse.urlencode(query))
        request.add_header("Accept", "application/json")
        token = self.token()
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                why = "has no token for it" if token is None else "refused the cluster's token"
                raise RayUnavailable(f"the head's dashboard {why} (HTTP {exc.code})") from None
            raise RayUnavailable(f"the head's dashboard answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            why = f"the head's dashboard at {url} does not answer: {reason}"
            raise RayUnavailable(why) from None
        return self.parse(payload)

    def parse(self, payload: bytes) -> dict[str, list[RayNode]]:
        """Ray 2.60's envelope: `{"result": true, "msg", "data": {"result": {"result": [..]}}}`."""
        try:
            body = json.loads(payload)
        except ValueError:
            raise RayUnavailable("the head's dashboard did not answer JSON") from None
        if not isinstance(body, dict) or body.get("result") is False:
            message = body.get("msg") if isinstance(body, dict) else None
            raise RayUnavailable(f"Ray did not list its nodes: {message or 'no reason given'}")
        data = body.get("data")
        listing = data.get("result") if isinstance(data, dict) else None
        items = listing.get("result") if isinstance(listing, dict) else None
        if not isinstance(items, list):
            raise RayUnavailable("Ray's node list has no data.result.result")
        found: dict[str, list[RayNode]] = {}
        for item in items:
            if not isinstance(item, dict) or item.get("state") != "ALIVE":
                continue
            labels = item.get("labels")
            if not isinstance(labels, dict) or labels.get(CLUSTER_LABEL) != self.cluster:
                continue
            node, ip = labels.get(NODE_LABEL), item.get("node_ip")
            if not node or not ip:
                continue
            started = item.get("start_time_ms")
            found.setdefault(str(node), []).append(
                RayNode(
                    node_id=str(item.get("node_id") or ""),
                    ip=str(ip),
                    started_at=started / 1000.0
                    if isinstance(started, (int, float)) and started > 0
                    else None,
                )
            )
        for nodes in found.values():
            # Newest first; equal start times by node id (raycai_core.ray.matching).
            nodes.sort(key=lambda n: (n.started_at or 0.0, n.node_id), reverse=True)
        return found


def node_group(node: str) -> str | None:
    """The worker group of `<group>-<k>` (raycai_core.naming.node_group); None otherwise."""
    match = GROUP_NODE_RE.match(node)
    return match.group(1) if match and match.group(1) != HEAD_NODE else None


def app_group(app: Mapping[str, Any]) -> str | None:
    """A worker application's group: its RAYCAI_GROUP, else its node name's; None for the
    head or an application that is no node."""
    environment = app_environment(app)
    node = environment.get("RAYCAI_NODE", "")
    group = node_group(node)
    if group is None:
        return None
    return environment.get("RAYCAI_GROUP") or group


def group_settings(settings: Mapping[str, Any], group: str) -> Mapping[str, Any] | None:
    """The provider settings of one worker group (None when the cluster has no such group)."""
    groups = settings.get("groups")
    if isinstance(groups, Mapping):
        found = groups.get(group)
        return found if isinstance(found, Mapping) else None
    return settings if group == DEFAULT_GROUP and "worker_request" in settings else None


def cluster_hash(project_id: str, cluster: str) -> str:
    """The same 6 hex digits as raycai_core.naming.cluster_hash (a test keeps them equal)."""
    return hashlib.sha256(f"{project_id}\x00{cluster}".encode()).hexdigest()[:6]


def worker_request(settings: Mapping[str, Any], project_id: str, node: str) -> dict:
    """The CreateApplicationRequest body for worker `node` (`<group>-<k>`) with its group's
    settings: raycai's own request for it."""
    group = node_group(node)
    if group is None:
        raise ValueError(f"{node!r} is not a worker node (worker-1, gpu-2, ...)")
    own = group_settings(settings, group)
    if own is None:
        raise ValueError(f"cluster {settings['cluster']} has no worker group {group!r}")
    cluster = str(settings["cluster"])
    index = node.rsplit("-", 1)[1]
    subdomain = str(own["subdomain_format"]).format(
        hash=cluster_hash(project_id, cluster), index=index
    )
    if len(subdomain) > SUBDOMAIN_MAX:
        raise ValueError(f"subdomain {subdomain!r} is longer than {SUBDOMAIN_MAX} characters")
    environment = own.get("environment") or settings["environment"]
    body = dict(own["worker_request"])
    body.update(
        name=str(settings["name_format"]).format(node=node),
        subdomain=subdomain,
        description=str(settings["description_format"]).format(node=node),
        environment={str(k): str(v).format(node=node) for k, v in environment.items()},
        project_id=project_id,
    )
    return body


class CMLNodeProvider(BatchingNodeProvider):
    """CML applications of one raycai cluster as Ray autoscaler nodes (ids: application ids)."""

    def __init__(
        self,
        provider_config: dict[str, Any],
        cluster_name: str,
        api: CMLApi | None = None,
        cluster_dir: str | None = None,
        ray_nodes: RayNodes | None = None,
    ) -> None:
        if provider_config.get("worker_liveness_check", True) is not False:
            raise ValueError("the raycai provider needs `worker_liveness_check: false`")
        BatchingNodeProvider.__init__(self, provider_config, cluster_name)
        settings = provider_config.get("raycai")
        if not isinstance(settings, dict) or settings.get("schema") != SCHEMA:
            raise ValueError(f"provider.raycai is missing or not of schema {SCHEMA}")
        self.settings = settings
        self.cluster = str(settings["cluster"])
        self.cluster_dir = cluster_dir or os.path.dirname(os.path.abspath(__file__))
        self.api = api or CMLApi.from_environment()
        self.ray_nodes = ray_nodes or RayNodes(self.cluster_dir, self.cluster)
        # Ray's alive nodes by raycai node name, from this pass (None: Ray did not answer).
        self.ray_listing: dict[str, list[RayNode]] | None = None
        self.ray_problem: str | None = ""  # "" before the first pass; logged when it changes
        self.ip_disagreements: dict[str, tuple[str, str]] = {}  # app id -> (record, Ray), logged
        # Applications asked to go, kept out of get_node_data until CML no longer lists
        # them: app id -> {"node", "reason", "since", "deleted" (the DELETE succeeded)}.
        self.deleting: dict[str, dict[str, Any]] = {}
        self.listed: dict[str, dict] = {}  # app id -> application, from the last listing
        self.nodes: dict[str, str] = {}  # app id -> raycai node name (listed or being created)
        self.listed_at: float | None = None  # time.monotonic() of the last listing
        self.lists = 0  # listings made (each one or more CML list requests)
        self.change_asked = False  # the previous pass submitted a scale request
        # Applications created and not listed yet: app id -> (node, time.monotonic()).
        self.creating: dict[str, tuple[str, float]] = {}
        self.unknown_groups: set[str] = set()  # logged once each
        # Per group: workers replaced in a row because their application failed, and when
        # the next creation may be tried.
        self.failures: dict[str, int] = {}
        self.create_not_before: dict[str, float] = {}
        logger.info(
            "%s cluster %s, project %s, workspace %s",
            LOG_PREFIX,
            self.cluster,
            self.api.project_id,
            self.api.base_url,
        )

    # -- reading -------------------------------------------------------------------------

    def cluster_apps(self) -> list[dict]:
        """This cluster's applications (the name filter alone also matches `demo-2`'s)."""
        apps = self.api.list_applications({"name": f"raycai-{self.cluster}-"})
        return [a for a in apps if app_environment(a).get("RAYCAI_CLUSTER") == self.cluster]

    def list_now(self) -> None:
        """List the cluster's applications (one CML list, paged) and forget deletions done."""
        apps = self.cluster_apps()
        self.lists += 1
        self.listed_at = time.monotonic()
        self.change_asked = False
        self.listed = {str(a["id"]): a for a in apps if a.get("id")}
        self.nodes = {i: app_environment(a).get("RAYCAI_NODE", "") for i, a in self.listed.items()}
        for app_id, (node, since) in list(self.creating.items()):
            if app_id in self.listed or self.listed_at - since > CREATING_TTL_S:
                del self.creating[app_id]
            else:
                self.nodes[app_id] = node  # counted and its name taken until CML lists it
        for app_id in [i for i in self.deleting if i not in self.listed]:
            gone = self.deleting.pop(app_id)
            logger.info("%s %s (app %s) is gone", LOG_PREFIX, gone["node"], app_id)

    def listing_stale(self) -> bool:
        """Must this pass list again? Yes when the listing is older than LIST_MAX_AGE_S, the
        previous pass asked for a change, a creation or deletion is in flight, or a listed
        application is not running (it is starting, stopping or failed)."""
        if self.listed_at is None or self.change_asked or self.creating or self.deleting:
            return True
        if time.monotonic() - self.listed_at > LIST_MAX_AGE_S:
            return True
        return any(normalise_status(a.get("status")) != "running" for a in self.listed.values())

    def get_node_data(self) -> dict[str, NodeData]:
        if self.listing_stale():
            self.list_now()
        self.ray_listing = self._ask_ray()
        self._retry_deletions()
        data: dict[str, NodeData] = {}
        for app_id, app in self.listed.items():
            if app_id in self.deleting:
                continue
            node = self.nodes[app_id]
            status = normalise_status(app.get("status"))
            if node == HEAD_NODE:
                data[app_id] = NodeData(
                    kind=NODE_KIND_HEAD,
                    type=HEAD_TYPE,
                    ip=self.node_ip(app_id, node, app),
                    status=_tag(status),
                )
            elif (group := app_group(app)) is not None:
                if group_settings(self.settings, group) is None:
                    if group not in self.unknown_groups:
                        logger.warning(
                            "%s %s (app %s) is of worker group %s, which the cluster no "
                            "longer has: left out",
                            LOG_PREFIX,
                            node,
                            app_id,
                            group,
                        )
                        self.unknown_groups.add(group)
                    continue
                if status in ("failed", "stopped"):
                    if not self.suspended():  # a suspend stops workers: they stay
                        self._replace(app_id, group, f"application {status.upper()}")
                    continue
                data[app_id] = NodeData(
                    kind=NODE_KIND_WORKER,
                    type=group,
                    ip=self.node_ip(app_id, node, app),
                    status=_tag(status),
                )
                if status == "running" and self.failures.get(group) and self._joined(node, app):
                    self.failures.pop(group, None)
                    self.create_not_before.pop(group, None)
        self.ip_disagreements = {
            i: pair for i, pair in self.ip_disagreements.items() if i in self.listed
        }
        return data

    def _ask_ray(self) -> dict[str, list[RayNode]] | None:
        """This pass's one question to Ray; None (records only) when it cannot be answered."""
        try:
            seen = self.ray_nodes.fetch()
        except RayUnavailable as exc:
            problem = str(exc)
            if problem != self.ray_problem:
                logger.warning(
                    "%s cannot list Ray's nodes (%s): matching nodes by the launchers' records",
                    LOG_PREFIX,
                    problem,
                )
            self.ray_problem = problem
            return None
        if self.ray_problem:
            logger.info("%s Ray lists its nodes again: matching nodes by label", LOG_PREFIX)
        self.ray_problem = None
        return seen

    def ray_node(self, node: str, app: Mapping[str, Any]) -> RayNode | None:
        """The alive Ray node this application runs: the newest carrying its labels that
        started after the application was created (an older one is an earlier application's
        of the same name, which Ray has not yet found dead)."""
        created = rfc3339_seconds(app.get("created_at"))
        for candidate in (self.ray_listing or {}).get(node, []):
            if started_in_time(candidate.started_at, created):
                return candidate
        return None

    def node_ip(self, app_id: str, node: str, app: Mapping[str, Any]) -> str | None:
        """The IP Ray uses for this application's node: Ray's own when it lists the node,
        else the launcher's record."""
        recorded = self.recorded_ip(node, app)
        listed = self.ray_node(node, app)
        if listed is None:
            return recorded
        if recorded and recorded != listed.ip:
            pair = (recorded, listed.ip)
            if self.ip_disagreements.get(app_id) != pair:
                logger.warning(
                    "%s %s (app %s): Ray's node %s has IP %s but the launcher recorded %s: "
                    "using Ray's",
                    LOG_PREFIX,
                    node,
                    app_id,
                    listed.node_id[:12],
                    listed.ip,
                    recorded,
                )
                self.ip_disagreements[app_id] = pair
        return listed.ip

    def recorded_ip(self, node: str, app: Mapping[str, Any]) -> str | None:
        """The IP in the node's launcher records written by this application: the head's
        head.json, then nodes/<node>.json (a record left by an earlier application of the
        same name holds an IP that may be reused)."""
        files = [os.path.join(self.cluster_dir, "nodes", node + ".json")]
        if node == HEAD_NODE:
            files.insert(0, os.path.join(self.cluster_dir, "head.json"))
        records = []
        for path in files:
            data = read_json(path) or {}
            records.append(
                (str(data.get("ip") or "") or None, record_seconds(data.get("started_at")))
            )
        return launcher_ip(records, rfc3339_seconds(app.get("created_at")))

    def _record(self, node: str, app: Mapping[str, Any]) -> dict:
        """The node's launcher record, if it was written by this application."""
        record = read_json(os.path.join(self.cluster_dir, "nodes", node + ".json")) or {}
        created = rfc3339_seconds(app.get("created_at"))
        return record if started_in_time(record_seconds(record.get("started_at")), created) else {}

    def _joined(self, node: str, app: Mapping[str, Any]) -> bool:
        if self.ray_node(node, app) is not None:
            return True
        return self._record(node, app).get("phase") == "joined"

    def cluster_active(self) -> bool:
        """False once `raycai down` marked the cluster deleting (or removed its files)."""
        return desired_state(self.cluster_dir) == "active"

    # -- changing ------------------------------------------------------------------------

    def suspended(self) -> bool:
        """cluster.json says suspended: the head stops this autoscaler; until then it
        creates, deletes and replaces nothing."""
        return desired_state(self.cluster_dir) == "suspended"

    def submit_scale_request(self, scale_request: ScaleRequest) -> None:
        if self.suspended():
            logger.info("%s changing nothing: the cluster is suspended", LOG_PREFIX)
            return
        self.change_asked = True  # the next pass lists again
        for app_id in sorted(scale_request.workers_to_delete):
            self._delete(app_id, "asked by the autoscaler")
        wanted = {
            str(group): int(count)
            for group, count in scale_request.desired_num_workers.items()
            if group != HEAD_TYPE and int(count) > self.have(str(group))
        }
        if not wanted:
            return
        if not self.cluster_active():
            logger.info("%s not creating workers: the cluster is being deleted", LOG_PREFIX)
            return
        for group, count in wanted.items():
            if group_settings(self.settings, group) is None:
                logger.error("%s Ray asked for workers of unknown group %s", LOG_PREFIX, group)
                continue
            wait = self.create_not_before.get(group, 0.0) - time.time()
            if wait > 0:
                logger.warning(
                    "%s not creating %d %s worker(s) for %.0f s more: %d replaced worker(s) "
                    "of the group failed in a row (see their logs in logs/)",
                    LOG_PREFIX,
                    count - self.have(group),
                    group,
                    wait,
                    self.failures.get(group, 0),
                )
                continue
            self.grow(group, count)

    def have(self, group: str) -> int:
        """Workers of `group` that exist or are being created (not those being deleted)."""
        return sum(
            1
            for app_id, node in self.nodes.items()
            if node_group(node) == group and app_id not in self.deleting
        )

    def rolling_update(self) -> bool:
        """A rolling update (`raycai up`, rolling.json `running`, written at each step in the
        last ROLLING_FRESH_S) replaces workers: it holds one more than a group's count on
        purpose, so the provider creates and deletes nothing meanwhile."""
        record = read_json(os.path.join(self.cluster_dir, "rolling.json")) or {}
        if record.get("state") != "running":
            return False
        try:
            return time.time() - float(record.get("updated_at") or 0) < ROLLING_FRESH_S
        except (TypeError, ValueError):
            return False

    def grow(self, group: str, wanted: int) -> None:
        """Create workers of `group` until it has `wanted`. A name CML refuses as taken (409:
        the listing missed an application) makes one fresh listing, then the count and the
        free names are worked out again from it."""
        if self.rolling_update():
            logger.info("%s not creating %s workers: a rolling update runs", LOG_PREFIX, group)
            return
        relisted = False
        while True:
            conflict = False
            for node in self.free_nodes(wanted - self.have(group), group):
                outcome = self._create(node)
                if outcome == "conflict":
                    conflict = True
                    break
                if outcome == "failed":
                    return
            if not conflict or relisted:
                return
            logger.info("%s listing again: a name was taken", LOG_PREFIX)
            self.list_now()
            self.change_asked = True
            relisted = True

    def free_nodes(self, count: int, group: str = DEFAULT_GROUP) -> list[str]:
        """The `count` lowest names of `group` no listed application has (deleting ones too:
        their subdomain is taken until CML has removed them)."""
        taken = set(self.nodes.values())
        found: list[str] = []
        index = 1
        while len(found) < count:
            node = f"{group}-{index}"
            if node not in taken:
                found.append(node)
            index += 1
        return found

    def _create(self, node: str) -> str:
        """Create worker `node`: "created", "conflict" (409: the name is taken) or "failed"."""
        body = worker_request(self.settings, self.api.project_id, node)
        try:
            app = self.api.create_application(body)
        except CMLApiError as exc:
            if exc.status == 409:
                logger.info("%s %s exists already (%s)", LOG_PREFIX, node, exc)
                return "conflict"
            logger.error("%s creating %s failed: %s", LOG_PREFIX, node, exc)
            return "failed"
        app_id = str(app.get("id") or "")
        self.nodes[app_id] = node
        self.creating[app_id] = (node, time.monotonic())
        logger.info("%s created %s (app %s, %s)", LOG_PREFIX, node, app_id, body["name"])
        return "created"

    def _delete(self, app_id: str, reason: str) -> None:
        node = self.nodes.get(app_id) or app_id
        if self.rolling_update():
            logger.info("%s not deleting %s (%s): a rolling update runs", LOG_PREFIX, node, reason)
            return
        self.deleting[app_id] = {"node": node, "reason": reason, "since": time.time()}
        self._send_delete(app_id)
        logger.info("%s deleting %s (app %s): %s", LOG_PREFIX, node, app_id, reason)

    def _send_delete(self, app_id: str) -> None:
        entry = self.deleting[app_id]
        try:
            self.api.delete_application(app_id)
        except CMLApiError as exc:
            if exc.status != 404:
                logger.warning("%s delete of %s failed (retried): %s", LOG_PREFIX, app_id, exc)
                return
        entry["deleted"] = True

    def _retry_deletions(self) -> None:
        for app_id, entry in self.deleting.items():
            if not entry.get("deleted"):
                self._send_delete(app_id)

    def _replace(self, app_id: str, group: str, reason: str) -> None:
        """A failed or stopped worker goes; the autoscaler creates another if it needs one
        (after a backoff that grows while the group's replacements keep failing)."""
        failures = self.failures[group] = self.failures.get(group, 0) + 1
        delay = min(REPLACE_BACKOFF_S[1], REPLACE_BACKOFF_S[0] * 2 ** (failures - 1))
        self.create_not_before[group] = time.time() + (delay if failures > 1 else 0.0)
        self._delete(app_id, f"replacing it: {reason}")


def _tag(status: str) -> str:
    """Ray's node status: up-to-date exactly when running, update-failed when failed."""
    if status == "running":
        return STATUS_UP_TO_DATE
    if status in ("failed", "stopped"):
        return STATUS_UPDATE_FAILED
    return status if status != "unknown" else "pending"
