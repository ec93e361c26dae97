"""raycai's node provider for Ray's autoscaler: the nodes are this cluster's CML applications.

Copied by raycai into the cluster directory as `raycai_cml_provider.py` (edits are
overwritten); Ray's monitor loads it from there (`provider.module` in autoscaler.json), so it
depends on the standard library and Ray only, never on how raycai was installed.

Built on BatchingNodeProvider as KubeRay's provider is: each autoscaler pass starts with one
listing of the cluster's applications (`get_node_data`) and ends with at most one batch of
creations and deletions (`submit_scale_request`). Workers are created with the same names,
subdomains, environment, script and sizes as raycai's own, so `raycai list/status/logs/down`
see them as usual. Ray matches a node to its raylet by IP: a node's IP is the one its
launcher recorded in nodes/<node>.json (the head's in head.json).

Credentials are the head application's own workload credentials (CDSW_APIV2_KEY and
CDSW_API_URL or CDSW_DOMAIN), as cmlapi.default_client() reads them; nothing else.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

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
WORKER_RE = re.compile(r"^worker-([1-9][0-9]*)$")
SUBDOMAIN_MAX = 63
PAGE_SIZE = 1000
REQUEST_TIMEOUT_S = 30.0
# A worker whose application failed or stopped is replaced; when replacements keep
# failing (a broken runtime, a quota never met), creations wait longer each time.
REPLACE_BACKOFF_S = (5.0, 300.0)
LOG_PREFIX = "raycai-provider:"
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


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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
            raise CMLApiError(exc.code, _error_message(exc.read())) from None
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


def _error_message(raw: bytes) -> str:
    """grpc-gateway's `{code, message, error}` (any may be missing) as one line."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "code"):
            if body.get(key):
                return " ".join(str(body[key]).split())[:300]
    return " ".join(raw.decode("utf-8", "replace").split())[:300] or "no details"


def cluster_hash(project_id: str, cluster: str) -> str:
    """The same 6 hex digits as raycai_core.naming.cluster_hash (a test keeps them equal)."""
    return hashlib.sha256(f"{project_id}\x00{cluster}".encode()).hexdigest()[:6]


def worker_request(settings: Mapping[str, Any], project_id: str, node: str) -> dict:
    """The CreateApplicationRequest body for worker `node`: raycai's own request for it."""
    match = WORKER_RE.match(node)
    if not match:
        raise ValueError(f"{node!r} is not a worker node (worker-1, worker-2, ...)")
    cluster = str(settings["cluster"])
    index = match.group(1)
    subdomain = str(settings["subdomain_format"]).format(
        hash=cluster_hash(project_id, cluster), index=index
    )
    if len(subdomain) > SUBDOMAIN_MAX:
        raise ValueError(f"subdomain {subdomain!r} is longer than {SUBDOMAIN_MAX} characters")
    body = dict(settings["worker_request"])
    body.update(
        name=str(settings["name_format"]).format(node=node),
        subdomain=subdomain,
        description=str(settings["description_format"]).format(node=node),
        environment={str(k): str(v).format(node=node) for k, v in settings["environment"].items()},
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
        # Applications asked to go, kept out of get_node_data until CML no longer lists
        # them: app id -> {"node", "reason", "since", "deleted" (the DELETE succeeded)}.
        self.deleting: dict[str, dict[str, Any]] = {}
        self.listed: dict[str, dict] = {}  # app id -> application, from the last listing
        self.nodes: dict[str, str] = {}  # app id -> raycai node name
        self.failures = 0  # workers replaced in a row because their application failed
        self.create_not_before = 0.0
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

    def get_node_data(self) -> dict[str, NodeData]:
        apps = self.cluster_apps()
        self.listed = {str(a["id"]): a for a in apps if a.get("id")}
        self.nodes = {i: app_environment(a).get("RAYCAI_NODE", "") for i, a in self.listed.items()}
        for app_id in [i for i in self.deleting if i not in self.listed]:
            gone = self.deleting.pop(app_id)
            logger.info("%s %s (app %s) is gone", LOG_PREFIX, gone["node"], app_id)
        self._retry_deletions()
        data: dict[str, NodeData] = {}
        for app_id, app in self.listed.items():
            if app_id in self.deleting:
                continue
            node = self.nodes[app_id]
            status = normalise_status(app.get("status"))
            if node == HEAD_NODE:
                data[app_id] = NodeData(
                    kind=NODE_KIND_HEAD, type=HEAD_TYPE, ip=self.head_ip(), status=_tag(status)
                )
            elif WORKER_RE.match(node):
                if status in ("failed", "stopped"):
                    self._replace(app_id, f"application {status.upper()}")
                    continue
                data[app_id] = NodeData(
                    kind=NODE_KIND_WORKER,
                    type=WORKER_TYPE,
                    ip=self.worker_ip(node, app),
                    status=_tag(status),
                )
                if status == "running" and self.failures and self._joined(node, app):
                    self.failures, self.create_not_before = 0, 0.0
        return data

    def head_ip(self) -> str | None:
        head = read_json(os.path.join(self.cluster_dir, "head.json")) or {}
        record = read_json(os.path.join(self.cluster_dir, "nodes", "head.json")) or {}
        return str(head.get("ip") or record.get("ip") or "") or None

    def _record(self, node: str, app: Mapping[str, Any]) -> dict:
        """The node's launcher record, if it was written by this application (a record left
        by an earlier application of the same name holds an IP that may be reused)."""
        record = read_json(os.path.join(self.cluster_dir, "nodes", node + ".json")) or {}
        created = rfc3339_seconds(app.get("created_at"))
        started = record.get("started_at")
        if created is not None and isinstance(started, (int, float)) and started < created - 5:
            return {}
        return record

    def worker_ip(self, node: str, app: Mapping[str, Any]) -> str | None:
        return str(self._record(node, app).get("ip") or "") or None

    def _joined(self, node: str, app: Mapping[str, Any]) -> bool:
        return self._record(node, app).get("phase") == "joined"

    def cluster_active(self) -> bool:
        """False once `raycai down` marked the cluster deleting (or removed its files)."""
        desired = read_json(os.path.join(self.cluster_dir, "cluster.json"))
        return desired is not None and desired.get("state", "active") == "active"

    # -- changing ------------------------------------------------------------------------

    def submit_scale_request(self, scale_request: ScaleRequest) -> None:
        for app_id in sorted(scale_request.workers_to_delete):
            self._delete(app_id, "asked by the autoscaler")
        wanted = int(scale_request.desired_num_workers.get(WORKER_TYPE, 0))
        have = sum(
            1
            for app_id, node in self.node_data_dict.items()
            if node.kind == NODE_KIND_WORKER and app_id not in self.deleting
        )
        missing = wanted - have
        if missing <= 0:
            return
        if not self.cluster_active():
            logger.info("%s not creating workers: the cluster is being deleted", LOG_PREFIX)
            return
        wait = self.create_not_before - time.time()
        if wait > 0:
            logger.warning(
                "%s not creating %d worker(s) for %.0f s more: %d replaced worker(s) failed "
                "in a row (see their logs in logs/)",
                LOG_PREFIX,
                missing,
                wait,
                self.failures,
            )
            return
        for node in self.free_nodes(missing):
            self._create(node)

    def free_nodes(self, count: int) -> list[str]:
        """The `count` lowest worker names no listed application has (deleting ones too:
        their subdomain is taken until CML has removed them)."""
        taken = set(self.nodes.values())
        found: list[str] = []
        index = 1
        while len(found) < count:
            node = f"worker-{index}"
            if node not in taken:
                found.append(node)
            index += 1
        return found

    def _create(self, node: str) -> None:
        body = worker_request(self.settings, self.api.project_id, node)
        try:
            app = self.api.create_application(body)
        except CMLApiError as exc:
            if exc.status == 409:
                logger.info("%s %s exists already (%s)", LOG_PREFIX, node, exc)
            else:
                logger.error("%s creating %s failed: %s", LOG_PREFIX, node, exc)
            return
        app_id = str(app.get("id") or "")
        self.nodes[app_id] = node
        logger.info("%s created %s (app %s, %s)", LOG_PREFIX, node, app_id, body["name"])

    def _delete(self, app_id: str, reason: str) -> None:
        node = self.nodes.get(app_id) or app_id
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

    def _replace(self, app_id: str, reason: str) -> None:
        """A failed or stopped worker goes; the autoscaler creates another if it needs one."""
        self.failures += 1
        delay = min(REPLACE_BACKOFF_S[1], REPLACE_BACKOFF_S[0] * 2 ** (self.failures - 1))
        self.create_not_before = time.time() + (delay if self.failures > 1 else 0.0)
        self._delete(app_id, f"replacing it: {reason}")


def _tag(status: str) -> str:
    """Ray's node status: up-to-date exactly when running, update-failed when failed."""
    if status == "running":
        return STATUS_UP_TO_DATE
    if status in ("failed", "stopped"):
        return STATUS_UPDATE_FAILED
    return status if status != "unknown" else "pending"
