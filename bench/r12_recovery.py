"""R12: from `kill -9` of the head's GCS to every node ALIVE and a Serve route answering
through the head application's URL (local workspace, real Ray, head + 1 worker, the Serve
example deployed with `raycai serve deploy`). Target <= 15 s (Ray itself needs about 7 s
here to start a head again).

The head's launcher restarts Ray inside its application with the GCS state it kept on the
head's disk: the worker stays attached and Serve's controller and replicas come back by
themselves. The same run then measures the path this replaced, for comparison: the head's
whole application killed (its pod lost), so the platform restarts it (a 0.5 s platform delay
here; CML's is 300 s) as a new incarnation that the worker re-joins and that re-applies the
stored Serve config.

Usage: python bench/r12_recovery.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from _common import REPO, Report, ensure_private_netns, load_average, median, short_tmpdir, spread
from p13_head_proxy import cli_env, raycai  # the CLI as a user runs it, one copy

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle

TARGET_S = 15.0
NAME = "r12"
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "examples" / "serve"


class Cluster:
    """What the measurement reads: the launchers' records, Ray's node list, the route."""

    def __init__(self, handle: WorkspaceHandle) -> None:
        from raycai_core.cluster.layout import ClusterPaths

        self.handle = handle
        self.paths = ClusterPaths(handle.project_dir, NAME)
        self.token = self.paths.auth_token.read_text().strip()
        state = json.loads(raycai(handle, "serve", "status", NAME, "--json"))
        route = next(a["cml_url"] for a in state["applications"] if a["name"] == "sentiment")
        parts = urlsplit(route)
        self.route = f"http://127.0.0.1:{parts.port}{parts.path}?text=easy"
        self.headers = {
            "Host": parts.netloc,
            "Authorization": f"Bearer {handle.api_key}",
            "X-Ray-Authorization": f"Bearer {self.token}",
        }
        self.nodes = len(json.loads(raycai(handle, "status", NAME, "--json"))["nodes"])

    def record(self, node: str) -> dict[str, Any]:
        return json.loads(self.paths.node_record(node).read_text())

    def head(self) -> dict[str, Any]:
        return json.loads(self.paths.head_json.read_text())

    async def alive(self) -> int:
        """ALIVE nodes in Ray's own node list (the state API, with the cluster's token)."""
        from raycai_core.cluster.records import read_head_address, read_token
        from raycai_core.ray.client import RayClient
        from raycai_core.ray.errors import RayDashboardError

        head = read_head_address(self.paths)
        if head is None:
            return 0
        async with RayClient(head.dashboard_url, token=read_token(self.paths)) as ray:
            try:
                return len(await ray.nodes(alive_only=True))
            except RayDashboardError:
                return 0

    async def answers(self, web: httpx.AsyncClient) -> bool:
        try:
            got = await web.get(self.route, headers=self.headers)
        except httpx.HTTPError:
            return False
        return got.status_code == 200

    async def back(self, since: float, noticed: Any) -> float:
        """Seconds from `since` until `noticed()` (the crash was seen) and then every node
        ALIVE and the route answering, polled every 0.1 s."""
        async with httpx.AsyncClient(timeout=5.0) as web:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if noticed() and await self.alive() == self.nodes and await self.answers(web):
                    return time.monotonic() - since
                await asyncio.sleep(0.1)
        raise SystemExit("the cluster did not come back within 180 s")


def gcs_pid(ray_pid: int) -> int:
    """The head's gcs_server: in `ray start`'s process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == ray_pid and Path(argv0).name == "gcs_server":
            return int(entry.name)
    raise SystemExit(f"no gcs_server in process group {ray_pid}")


def in_place_round(cluster: Cluster) -> tuple[float, str]:
    head = cluster.record("head")
    before = int(head.get("ray_restarts") or 0)
    worker_node = cluster.record("worker-1")["ray_node_id"]
    killed = time.monotonic()
    os.kill(gcs_pid(int(head["ray_pid"])), signal.SIGKILL)

    def noticed() -> bool:
        return int(cluster.record("head").get("ray_restarts") or 0) > before

    took = asyncio.run(cluster.back(killed, noticed))
    same = cluster.record("worker-1")["ray_node_id"] == worker_node
    return took, "worker stayed attached" if same else "worker RE-JOINED"


def platform_round(cluster: Cluster) -> float:
    old = cluster.head()["incarnation"]
    cluster.handle.update_config(restart_delay_s=0.5)
    apps = {a["name"]: a for a in list_apps(cluster.handle)}
    killed = time.monotonic()
    os.killpg(cluster.handle.app_info(apps[f"raycai-{NAME}-head"]["id"])["pid"], signal.SIGKILL)

    def noticed() -> bool:
        head = cluster.head()
        reapplied = cluster.record("head").get("serve_reapplied") or {}
        return head["incarnation"] != old and bool(reapplied.get("apps"))

    return asyncio.run(cluster.back(killed, noticed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="GCS kills, one after another")
    parser.add_argument("--quick", action="store_true", help="one round of each")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    rounds = 1 if args.quick else args.rounds
    report = Report("R12 recovery: head GCS killed -> every node ALIVE + Serve answering")
    with short_tmpdir("r12-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)  # CML's 300 s platform restart delay
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            raycai(handle, "up", NAME, "--workers", "1", "--cpu", "1", "--memory", "1",
                   "--head-cpu", "1", "--head-memory", "1", "--runtime", runtime())  # fmt: skip
            try:
                copy = handle.project_dir / "serve"
                shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
                raycai(handle, "serve", "deploy", NAME, str(copy / "serve_config.yaml"))
                cluster = Cluster(handle)
                times = []
                for index in range(rounds):
                    took, worker = in_place_round(cluster)
                    times.append(took)
                    print(f"round {index + 1}: {took:.2f} s ({worker}); {load_average()}")
                    time.sleep(5)  # Serve's replicas settled before the next kill
                platform = platform_round(cluster)
                print(f"platform restart (0.5 s delay): {platform:.2f} s; {load_average()}")
            finally:
                subprocess.run(
                    [str(BIN / "raycai"), "down", NAME, "--yes"],
                    env=cli_env(handle),
                    capture_output=True,
                )
    in_place = median(times)
    report.notes.append(
        f"in place: {spread(times)}; the head's whole application killed instead (its pod "
        f"lost), the platform restarting it after 0.5 s (CML: 300 s): {platform:.2f} s, "
        f"{platform / in_place:.2f}x the in-place figure"
    )
    report.add("R12 GCS killed -> all ALIVE + Serve answering (median)", in_place, TARGET_S, " s")
    report.add("the platform's restart path, 0.5 s delay (same run)", platform, None, " s")
    report.finish()


def runtime() -> str:
    from raycai_core.local.config import DEFAULT_RUNTIMES

    return DEFAULT_RUNTIMES[0]["image_identifier"]


def list_apps(handle: WorkspaceHandle) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{handle.url}/api/v2/projects/{handle.project_id}/applications",
        params={"page_size": 100},
        headers={"Authorization": f"Bearer {handle.api_key}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["applications"]


if __name__ == "__main__":
    main()
