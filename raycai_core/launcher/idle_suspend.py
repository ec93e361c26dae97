"""raycai's idle check: suspends the cluster after a while with nothing to do.

Copied by raycai into the cluster directory as `raycai_idle_suspend.py` (edits are
overwritten) when the spec sets `idle_suspend_minutes`; the head launcher runs it beside Ray
(supervised like the head proxy), so the cluster sleeps with no terminal open. Standard
library only: it never imports raycai or Ray (tests/test_head_programs.py).

Each round, while holding the cluster's lock (`.lock`, the core's flock; a round when
another operation holds it is skipped and the idle clock restarts), it asks the head's
dashboard for jobs, tasks, actors, placement groups and Serve applications. The cluster is
idle when no job is pending or running (driver jobs included: a connected notebook keeps
it awake), no task, actor or placement group is alive except Ray's own (job supervisors,
Serve's controller and proxies), and Serve has no application. An answer missing or refused
counts as busy. The clock starts with this program, i.e. at each head start.

Once idle for the configured minutes: `state = "suspended"` goes into cluster.json under
the lock; then the autoscaler is stopped (the head launcher stops it when it reads that
state; the provider creates and deletes nothing meanwhile), workers above each group's
minimum are deleted, the other workers' applications stopped (CML's stop: they keep their
name and hold no quota), and last the head's own application is stopped. `raycai resume`
(or a job, run or connect on the cluster) starts them again.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

HEAD_NODE = "head"
GROUP_NODE_RE = re.compile(r"^([a-z][a-z0-9]{0,11})-([1-9][0-9]*)$")
REQUEST_TIMEOUT_S = 30.0
DASHBOARD_TIMEOUT_S = 5.0  # asked while holding the lock: a scale waits at most 5 x this
STATE_LIMIT = 100
# Ray's own actors (and their tasks): a job's supervisor, Serve's controller and proxies.
# An empty Serve (its controller alone) or a finished job's supervisor keeps nothing awake.
RAY_OWN_CLASSES = (
    "JobSupervisor",
    "ServeController",
    "ProxyActor",
    "HTTPProxyActor",
    "ServeReplica",  # a replica of an application: Serve's answer says whether apps run
)
NOT_ALIVE = {
    "tasks": ("FINISHED", "FAILED"),
    "actors": ("DEAD",),
    "placement_groups": ("REMOVED",),
}
BUSY_JOB_STATES = ("PENDING", "RUNNING")
# A node whose launcher is on its way into Ray (raycai_core.cluster.phases): `up`, a scale or
# a resume is waiting for it, so the cluster is not idle. A record older than two heartbeats
# is a launcher gone (the phases' stale rule).
ARRIVING_PHASES = (
    "starting",
    "checking-ray",
    "waiting-for-head",
    "starting-ray",
    "rejoining",
    "recovering",
)
EXIT_NO_CREDENTIALS = 3
STOP_WAIT_S = 60.0  # the workers' applications stopped before the head's own goes


class Unavailable(Exception):
    """The dashboard or the workspace did not answer; the message says which and why."""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(f"{stamp} raycai-idle: {message}", flush=True)


# --- the decision (pure) ------------------------------------------------------------------


def state_rows(envelope: object) -> list[dict]:
    """The rows of a state API answer (`{"data": {"result": {"result": [...]}}}`)."""
    data = envelope.get("data") if isinstance(envelope, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    rows = result.get("result") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise ValueError("not a state API answer")
    return [row for row in rows if isinstance(row, dict)]


def ray_own(name: object) -> bool:
    """An actor class (`ServeController`) or a task of one (`JobSupervisor.run`)."""
    text = str(name or "")
    text = text.split(".", 1)[0].split(":", 1)[0]
    return text.startswith(RAY_OWN_CLASSES) or text.startswith("SERVE_")


def busy_reason(answers: Mapping[str, Any]) -> str | None:
    """Why the cluster is not idle, or None, from the dashboard's answers: `jobs` (GET
    /api/jobs/), `tasks`, `actors`, `placement_groups` (state API, alive ones) and `serve`
    (GET /api/serve/applications/). A missing or malformed answer is busy."""
    jobs = answers.get("jobs")
    if not isinstance(jobs, list):
        return "the jobs list did not answer"
    for job in jobs:
        if isinstance(job, dict) and str(job.get("status")) in BUSY_JOB_STATES:
            kind = "driver" if job.get("type") == "DRIVER" else "job"
            name = job.get("submission_id") or job.get("job_id") or "?"
            return f"{kind} {name} is {str(job.get('status')).lower()}"
    try:
        tasks = state_rows(answers.get("tasks"))
        actors = state_rows(answers.get("actors"))
        groups = state_rows(answers.get("placement_groups"))
    except ValueError:
        return "Ray's state API did not answer"
    for task in tasks:
        if str(task.get("state")) in NOT_ALIVE["tasks"]:
            continue
        if task.get("type") == "DRIVER_TASK" or ray_own(task.get("func_or_class_name")):
            continue  # a driver counts as its job; Ray's own actors' methods never end
        return (
            f"task {task.get('func_or_class_name') or task.get('task_id')} is {task.get('state')}"
        )
    for actor in actors:
        if str(actor.get("state")) in NOT_ALIVE["actors"] or ray_own(actor.get("class_name")):
            continue
        return f"actor {actor.get('class_name') or actor.get('actor_id')} is {actor.get('state')}"
    for group in groups:
        if str(group.get("state")) in NOT_ALIVE["placement_groups"]:
            continue
        return f"placement group {group.get('placement_group_id')} is {group.get('state')}"
    serve = answers.get("serve")
    apps = serve.get("applications") if isinstance(serve, dict) else None
    if not isinstance(apps, dict):
        return "Serve did not answer"
    if apps:
        return "Serve application " + ", ".join(sorted(apps)) + " deployed"
    return None


class IdleClock:
    """When the cluster has been idle long enough. Any busy or skipped round restarts it."""

    def __init__(self, seconds: float, now: float) -> None:
        self.seconds = seconds
        self.idle_since: float | None = now  # the head just started: nothing ran yet

    def busy(self) -> None:
        self.idle_since = None

    def idle(self, now: float) -> bool:
        """An idle round; True when the cluster has been idle for the whole period."""
        if self.idle_since is None:
            self.idle_since = now
        return now - self.idle_since >= self.seconds

    def idle_for(self, now: float) -> float:
        return 0.0 if self.idle_since is None else now - self.idle_since


def poll_interval(seconds: float) -> float:
    """A few rounds per period, at most every 30 s and at least every 1 s."""
    return min(30.0, max(1.0, seconds / 4))


def node_of(app: Mapping[str, Any], cluster: str) -> str | None:
    """The cluster node an application runs (RAYCAI_CLUSTER and RAYCAI_NODE in its
    environment), or None when it is not this cluster's."""
    env = app.get("environment")
    if isinstance(env, str):
        try:
            env = json.loads(env)
        except ValueError:
            env = {}
    if not isinstance(env, dict) or env.get("RAYCAI_CLUSTER") != cluster:
        return None
    node = str(env.get("RAYCAI_NODE") or "")
    return node if node == HEAD_NODE or GROUP_NODE_RE.match(node) else None


def normalise_status(value: object) -> str:
    text = str(value or "").strip().lower().removeprefix("application_")
    return text if text in ("starting", "running", "stopping", "stopped", "failed") else "unknown"


def plan_suspend(
    apps: list[dict], cluster: str, keep: Mapping[str, int]
) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]], dict | None]:
    """(workers to delete, workers to stop, the head) among the cluster's applications: in
    each group those above its minimum (`keep`; highest index first) go, and the workers of
    a group the cluster no longer has; the rest stop (already stopped ones are left)."""
    head = None
    groups: dict[str, list[tuple[int, str, dict]]] = {}
    delete: list[tuple[str, dict]] = []
    for app in apps:
        node = node_of(app, cluster)
        if node is None:
            continue
        if node == HEAD_NODE:
            head = app
            continue
        match = GROUP_NODE_RE.match(node)
        assert match is not None
        group, index = match.group(1), int(match.group(2))
        if group not in keep:
            delete.append((node, app))
        else:
            groups.setdefault(group, []).append((index, node, app))
    stop: list[tuple[str, dict]] = []
    for group, members in sorted(groups.items()):
        members.sort()
        wanted = max(0, int(keep[group]))
        delete += [(node, app) for _, node, app in reversed(members[wanted:])]
        stop += [
            (node, app)
            for _, node, app in members[:wanted]
            if normalise_status(app.get("status")) not in ("stopped", "stopping")
        ]
    return delete, stop, head


def arriving_nodes(records: Mapping[str, Mapping[str, Any]], now: float) -> list[str]:
    """The nodes whose launcher is on its way into Ray, from their records (nodes/*.json)."""
    arriving = []
    for node, record in sorted(records.items()):
        try:
            age = now - float(record.get("updated_at") or 0)
            stale = age > 2 * float(record.get("heartbeat_s") or 30)
        except (TypeError, ValueError):
            continue
        if record.get("phase") in ARRIVING_PHASES and not stale:
            arriving.append(node)
    return arriving


# --- the project's files ------------------------------------------------------------------


def node_records(cluster_dir: str) -> dict[str, dict]:
    directory = os.path.join(cluster_dir, "nodes")
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError:
        return {}
    records = {}
    for name in names:
        record = read_json(os.path.join(directory, name))
        if record is not None:
            records[name[: -len(".json")]] = record
    return records


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: str, value: dict) -> None:
    """Atomically (temp file + rename), keys in the order given, as the core writes it."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(value, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def cluster_lock(cluster_dir: str) -> Iterator[bool]:
    """The core's per-cluster flock, never waited for: yields False while another holds it."""
    try:
        fd = os.open(os.path.join(cluster_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def mark_suspended(cluster_dir: str, reason: str, now: float) -> bool:
    """cluster.json's state `active` -> `suspended` (with when and why); False when the
    cluster is not active (being deleted, already suspended, no file). The caller holds the
    lock."""
    path = os.path.join(cluster_dir, "cluster.json")
    desired = read_json(path)
    if desired is None or desired.get("state", "active") != "active":
        return False
    desired["state"] = "suspended"
    desired["updated_at"] = now
    desired["suspended"] = {"at": now, "reason": reason, "by": "head"}
    write_json(path, desired)
    return True


# --- the dashboard and the workspace ------------------------------------------------------


def state_query(kind: str) -> str:
    pairs = [("limit", str(STATE_LIMIT)), ("detail", "false")]
    for value in NOT_ALIVE[kind]:
        pairs += [("filter_keys", "state"), ("filter_predicates", "!="), ("filter_values", value)]
    return f"/api/v0/{kind}?" + urllib.parse.urlencode(pairs)


class Dashboard:
    def __init__(self, url: str, token_file: str | None) -> None:
        self.url = url.rstrip("/")
        self.token_file = token_file

    def get(self, path: str, missing: object = None) -> object:
        """The answer's JSON; `missing` when the path answers 501 (not installed)."""
        request = urllib.request.Request(self.url + path)
        if self.token_file:
            with open(self.token_file, encoding="utf-8") as handle:
                request.add_header("Authorization", "Bearer " + handle.read().strip())
        try:
            with urllib.request.urlopen(request, timeout=DASHBOARD_TIMEOUT_S) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 501 and missing is not None:
                return missing
            raise Unavailable(f"{path.split('?')[0]}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{path.split('?')[0]}: {exc}") from None

    def answers(self) -> dict[str, object]:
        answers: dict[str, object] = {"jobs": self.get("/api/jobs/")}
        for kind in NOT_ALIVE:
            answers[kind] = self.get(state_query(kind))
        # 501: Serve is not installed on the head, so it runs no application
        answers["serve"] = self.get("/api/serve/applications/", missing={"applications": {}})
        return answers


class Workspace:
    """The CML API v2 calls a suspend makes, with the head's workload credentials."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        key = (environ.get("CDSW_APIV2_KEY") or "").strip()
        api_url = (environ.get("CDSW_API_URL") or "").strip()
        domain = (environ.get("CDSW_DOMAIN") or "").strip()
        project = (environ.get("CDSW_PROJECT_ID") or "").strip()
        if not key or not project or not (api_url or domain):
            raise Unavailable("the head application has no workload credentials")
        if api_url:
            base = api_url.rstrip("/").removesuffix("/api/v1")
        else:
            base = domain if "://" in domain else "https://" + domain
        self.base = base.rstrip("/")
        self.key = key
        self.apps = "/api/v2/projects/" + urllib.parse.quote(project, safe="") + "/applications"

    def call(self, method: str, path: str, query: dict | None = None) -> dict:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self.key)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "raycai-idle")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        last = ""
        for attempt in range(4):
            try:
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
                    payload = answer.read()
                value = json.loads(payload) if payload.strip() else {}
                return value if isinstance(value, dict) else {}
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if method == "DELETE" and exc.code == 404:
                    return {}
                if exc.code < 500 and exc.code != 429:
                    break
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(2**attempt)
        raise Unavailable(f"{method} {path}: {last}")

    def list_apps(self) -> list[dict]:
        apps: list[dict] = []
        token = ""
        while True:
            query = {"search_filter": json.dumps({"name": "raycai-"}), "page_size": "1000"}
            if token:
                query["page_token"] = token
            page = self.call("GET", self.apps, query)
            apps += [a for a in page.get("applications") or [] if isinstance(a, dict)]
            token = str(page.get("next_page_token") or "")
            if not token:
                return apps

    def delete(self, app_id: str) -> None:
        self.call("DELETE", f"{self.apps}/{urllib.parse.quote(app_id, safe='')}")

    def stop(self, app_id: str) -> None:
        self.call("POST", f"{self.apps}/{urllib.parse.quote(app_id, safe='')}:stop")


# --- suspending -------------------------------------------------------------------------


def wait_autoscaler_off(cluster_dir: str, deadline_s: float = 15.0) -> None:
    """The head launcher stops its autoscaler once cluster.json says suspended."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        record = read_json(os.path.join(cluster_dir, "nodes", HEAD_NODE + ".json")) or {}
        state = (record.get("autoscaler") or {}).get("state")
        if state in (None, "off"):
            return
        time.sleep(0.5)
    log("the autoscaler is still running; its provider changes nothing while suspended")


def still_suspended(cluster_dir: str) -> bool:
    """A resume (or down) meanwhile wins: what it starts is not stopped again."""
    state = (read_json(os.path.join(cluster_dir, "cluster.json")) or {}).get("state")
    if state != "suspended":
        log(f"the cluster is {state or 'gone'} now: not stopping anything more")
    return state == "suspended"


def suspend(cluster_dir: str, cluster: str, keep: Mapping[str, int], api: Workspace) -> None:
    """After cluster.json says suspended: the autoscaler, the workers, then the head."""
    wait_autoscaler_off(cluster_dir)
    delete, stop, head = plan_suspend(api.list_apps(), cluster, keep)
    if not still_suspended(cluster_dir):
        return
    for node, app in delete:
        log(f"deleting {node} (above its group's minimum)")
        api.delete(str(app.get("id")))
    for node, app in stop:
        log(f"stopping {node}")
        api.stop(str(app.get("id")))
    stopping = {str(app.get("id")) for _, app in stop}
    end = time.monotonic() + STOP_WAIT_S
    while stopping and time.monotonic() < end:
        listed = {str(a.get("id")): a for a in api.list_apps()}
        stopping = {
            i
            for i in stopping
            if i in listed
            and normalise_status(listed[i].get("status")) not in ("stopped", "failed")
        }
        if stopping:
            time.sleep(1.0)
    if head is None:
        log("no head application is listed: nothing more to stop")
        return
    if not still_suspended(cluster_dir):
        return
    log("stopping the head")
    api.stop(str(head.get("id")))


def settings(cluster_dir: str) -> tuple[float, dict[str, int]]:
    """(minutes, the workers each group keeps) from launcher.json's `idle_suspend`, which a
    scale re-renders."""
    config = read_json(os.path.join(cluster_dir, "launcher.json")) or {}
    block = config.get("idle_suspend") or {}
    keep = {str(k): int(v) for k, v in (block.get("keep") or {}).items()}
    return float(block.get("minutes") or 0), keep


def round_busy(cluster_dir: str, locked: bool, dashboard: Any, now: float) -> str:
    """Why this round does not count as idle ("" when it does), in the order that asks the
    dashboard last: the desired state, the cluster's lock (held elsewhere: the round is
    skipped), a node on its way into Ray, then the dashboard's answers."""
    state = (read_json(os.path.join(cluster_dir, "cluster.json")) or {}).get("state")
    if state not in (None, "active"):
        return f"the cluster is {state}"
    if not locked:
        return "another operation holds the cluster's lock"
    arriving = arriving_nodes(node_records(cluster_dir), now)
    if arriving:
        return "on its way into Ray: " + ", ".join(arriving)
    try:
        return busy_reason(dashboard.answers()) or ""
    except Unavailable as exc:
        return f"the dashboard did not answer ({exc})"


def run(args: argparse.Namespace) -> int:
    cluster_dir = os.path.abspath(args.cluster_dir)
    minutes, _ = settings(cluster_dir)
    if minutes <= 0:
        log("idle_suspend_minutes is not set: nothing to do")
        return 0
    try:
        api = Workspace(os.environ)
    except Unavailable as exc:
        log(f"off: {exc}")
        return EXIT_NO_CREDENTIALS
    dashboard = Dashboard(args.dashboard, args.token_file)
    clock = IdleClock(minutes * 60, time.monotonic())
    interval = poll_interval(minutes * 60)
    log(f"suspends {args.cluster} after {minutes:g} min idle (checks every {interval:g} s)")
    last = ""
    while True:
        time.sleep(interval)
        now = time.monotonic()
        with cluster_lock(cluster_dir) as locked:
            why = round_busy(cluster_dir, locked, dashboard, time.time())
            if why:
                clock.busy()
                if why != last:
                    log(f"busy: {why}")
                last = why
                continue
            if last != "idle":
                log("idle")
            last = "idle"
            if not clock.idle(now):
                continue
            minutes, keep = settings(cluster_dir)
            reason = f"idle for {minutes:g} min"
            if not mark_suspended(cluster_dir, reason, time.time()):
                continue
        log(f"suspending: {reason}")
        try:
            suspend(cluster_dir, args.cluster, keep, api)
        except Unavailable as exc:
            log(f"suspend did not finish ({exc}); `raycai suspend {args.cluster}` finishes it")
            return 1
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--dashboard", required=True, help="http://<ip>:<port>")
    parser.add_argument("--token-file")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
