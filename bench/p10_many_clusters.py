"""P10: a project with 50 clusters and 1,000 applications (a head and 19 workers each).

Targets: the clusters screen's poll tick costs 1 CML API request (one page: the list asks
for 1,000 applications a page); its refresh (the new snapshot handed to the screen, the
table reconciled, the screen drawn) <= 50 ms; `raycai list` <= 1 s.

What is real: the local workspace's HTTP API and its 1,000 applications, each a real
process in its own session, created through `ClusterManager` (its requests, subdomains,
environment); the project files (cluster.json, launcher.json, 1,000 node records, 50
head.json) in the layout the launchers write; raycai-tui (headless) and the `raycai` CLI.
What is not: no Ray, and no launcher. 1,000 launchers (and 1,000 Ray nodes) do not fit on
2 cores, so each application runs a stub instead of the launcher: it answers the
workspace's readiness probe, then execs `sleep`. The node records and head.json files the
launchers would publish are written by this bench once every application is RUNNING (phase
`running` for the heads, `joined` for the workers).

Baselines in the same run: `raycai list` on the same workspace before any cluster exists;
the refresh done naively (clear the table, add every row); the pages a client would need
with the API's default page size.

Usage: python bench/p10_many_clusters.py [--clusters 50] [--workers 19] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _common import Report, ensure_private_netns, load_average, median, short_tmpdir, spread

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle
    from raycai_tui.app import RaycaiApp
    from raycai_tui.services import Snapshot

REFRESH_TARGET_MS = 50.0
LIST_TARGET_S = 1.0
REQUESTS_TARGET = 1.0
POLL_S = 0.5  # between polls (the app's default is 2 s)
BIN = Path(sys.executable).parent
STUB = """\
# P10 stand-in for the raycai launcher: answer the readiness probe, then sleep cheaply.
import os, socket
server = socket.create_server(("0.0.0.0", int(os.environ["CDSW_APP_PORT"])))
conn, _ = server.accept()
conn.recv(4096)
conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
conn.close()
server.close()
os.execv("/bin/sleep", ["sleep", "infinity"])
"""


def cli_env(handle: WorkspaceHandle) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    env.update(
        CML_HOST=handle.url,
        CML_API_KEY=handle.api_key,
        CML_PROJECT_ID=handle.project_id,
        RAYCAI_PROJECT_DIR=str(handle.project_dir),
    )
    return env


def raycai_list(handle: WorkspaceHandle, runs: int) -> tuple[list[float], str]:
    """Wall times of `raycai list` (a fresh process each, as a user runs it), its output."""
    times = []
    output = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "raycai"), "list"],
            env=cli_env(handle),
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
        output = done.stdout
    return times, output


async def create_clusters(handle: WorkspaceHandle, clusters: int, workers: int) -> None:
    """`clusters` clusters of a head and `workers` workers, every app running the stub."""
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.naming import HEAD_NODE, worker_node
    from raycai_core.spec import spec_from_flags

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, Path(handle.project_dir), create_concurrency=16)
        specs = [
            spec_from_flags(name=f"proj-{k:02d}", runtime=runtime, workers=workers, cpu=1, memory=2)
            for k in range(1, clusters + 1)
        ]
        for spec in specs:
            ops._write_spec(spec)  # cluster.json, launcher.json, the launchers, the token
            for role in ("head", "worker"):
                ops.paths(spec.name).script(role).write_text(STUB)
        nodes = [HEAD_NODE] + [worker_node(k) for k in range(1, workers + 1)]
        await asyncio.gather(*(ops._create(spec, node) for spec in specs for node in nodes))
        await ops.observer.aclose()


async def wait_running(handle: WorkspaceHandle, expected: int, timeout: float) -> float:
    from raycai_core.cluster.apps import APP_FILTER
    from raycai_core.cml.client import CMLClient
    from raycai_core.cml.models import AppStatus

    started = time.monotonic()
    async with CMLClient(handle.credentials()) as cml:
        while True:
            apps = await cml.list_applications(APP_FILTER)
            running = sum(1 for a in apps if a.status is AppStatus.RUNNING)
            if running >= expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{running} of {expected} applications running")
            await asyncio.sleep(2.0)


async def publish_records(handle: WorkspaceHandle) -> int:
    """What each launcher would have written by now: its node record; the heads' head.json."""
    from raycai_core.atomic import atomic_write_json
    from raycai_core.cluster.apps import APP_FILTER
    from raycai_core.cluster.layout import ClusterPaths
    from raycai_core.cml.client import CMLClient

    async with CMLClient(handle.credentials()) as cml:
        apps = await cml.list_applications(APP_FILTER)
    infos = {info["id"]: info for info in handle.apps_info()}
    now = time.time()
    written = 0
    for app in apps:
        info = infos[app.id]
        cluster = app.environment.get("RAYCAI_CLUSTER")
        node = app.environment.get("RAYCAI_NODE")
        if not cluster or not node:
            continue
        paths = ClusterPaths(Path(handle.project_dir), cluster)
        role = "head" if node == "head" else "worker"
        record = {
            "schema": 1,
            "cluster": cluster,
            "node": node,
            "role": role,
            "phase": "running" if role == "head" else "joined",
            "error": None,
            "ip": info.get("ip"),
            "app_port": info.get("app_port"),
            "pid": info.get("pid"),
            "ray_node_name": f"raycai-{cluster}-{node}",
            "head_incarnation": "p10",
            "started_at": now - 60,
            "updated_at": now,
            "phase_since": now - 50,
            "restarts": 0,
            "detail": None,
        }
        paths.nodes_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(paths.node_record(node), record)
        if role == "head":
            head = {
                "schema": 1,
                "cluster": cluster,
                "node": node,
                "ip": info.get("ip"),
                "gcs_port": 6379,
                "dashboard_port": info.get("app_port"),
                "client_port": 10001,
                "started_at": now - 60,
                "incarnation": "p10",
                "ray_version": "stub",
                "pid": info.get("pid"),
            }
            atomic_write_json(paths.head_json, head)
        written += 1
    return written


async def poll_ticks(handle: WorkspaceHandle, ticks: int) -> tuple[dict, int, Snapshot]:
    """raycai-tui headless on its clusters screen: the API requests of `ticks` whole polls.

    The count starts right after a poll completed and ends right after the last one did
    (the poller waits poll_s between polls), so no request of a partial tick is counted.
    """
    from raycai_core.target import Target
    from raycai_tui.app import RaycaiApp, Settings
    from raycai_tui.screens.clusters import ClustersScreen
    from raycai_tui.widgets.clusters_table import ClustersTable

    target = Target(handle.credentials(), Path(handle.project_dir), "local")
    app = RaycaiApp(Settings(poll_s=POLL_S, heal=False), target=target)
    async with app.run_test(size=(160, 70)) as pilot:
        while app.polls < 2:
            await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, ClustersScreen)
        await polls_reach(app, app.polls + 1)
        handle.reset_stats()
        await polls_reach(app, app.polls + ticks)
        stats = handle.stats()
        rows = len(screen.query_one(ClustersTable).keys)
        assert app.snapshot is not None
        snapshot = app.snapshot
    return stats, rows, snapshot


async def polls_reach(app: RaycaiApp, count: int) -> None:
    """Return within a few ms of the app's `count`-th completed poll."""
    while True:
        if app.polls >= count:
            return
        await asyncio.sleep(0.005)


async def tick_costs(handle: WorkspaceHandle, rounds: int) -> tuple[list[float], list[float]]:
    """One poll's work, timed: the list call (on the UI's event loop: the request and the
    parsing of 1,000 applications), then the project files summarised (in a thread)."""
    from raycai_core.cluster.lifecycle import summarise
    from raycai_core.target import Target
    from raycai_tui.services import Services

    target = Target(handle.credentials(), Path(handle.project_dir), "local")
    services = await Services.open(target)
    lists, files = [], []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            members = await services.observer.list_members()
            listed = time.perf_counter()
            await asyncio.to_thread(summarise, target.project_dir, members)
            lists.append((listed - started) * 1000)
            files.append((time.perf_counter() - listed) * 1000)
    finally:
        await services.aclose()
    return lists, files


async def refresh_times(snapshot: Snapshot, rounds: int, naive: bool) -> tuple[float, list[float]]:
    """The clusters screen handed a snapshot where every row changed (its AGE: the snapshot
    alternates between two times an hour apart), until the screen is drawn; ms."""
    from dataclasses import replace

    from raycai_tui.app import RaycaiApp, Settings
    from raycai_tui.screens.clusters import ClustersScreen
    from raycai_tui.widgets.clusters_table import ClustersTable, summary_rows

    variants = [snapshot, replace(snapshot, taken_at=snapshot.taken_at + 3 * 3600)]
    app = RaycaiApp(Settings(poll_s=0, heal=False))
    timings: list[float] = []
    async with app.run_test(size=(160, 70)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ClustersScreen)
        table = screen.query_one(ClustersTable)

        def refresh(snap: Snapshot) -> None:
            if naive:
                table.clear()
                for key, cells in summary_rows(snap.summaries, snap.taken_at):
                    table.add_row(*cells, key=key)
            else:
                app.apply_snapshot(snap)

        gc.collect()
        started = time.perf_counter()
        refresh(variants[1])
        await pilot.pause(0)
        first = (time.perf_counter() - started) * 1000
        assert table.row_count == len(snapshot.summaries)
        for round_no in range(rounds):
            gc.collect()
            started = time.perf_counter()
            refresh(variants[round_no % 2])
            # pause(0): the messages the refresh caused are handled, then the screen drawn.
            await pilot.pause(0)
            timings.append((time.perf_counter() - started) * 1000)
    return first, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--workers", type=int, default=19, help="per cluster")
    parser.add_argument("--ticks", type=int, default=12, help="poll ticks counted")
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer rounds")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    apps = args.clusters * (args.workers + 1)
    runs = 3 if args.quick else 7
    rounds = 10 if args.quick else 30
    ticks = 5 if args.quick else args.ticks
    load_before = load_average()
    config = WorkspaceConfig(stop_grace_s=2.0, ready_poll_s=0.5)
    with short_tmpdir() as tmp, run_workspace_in_thread(tmp / "ws", config) as handle:
        empty_list, _ = raycai_list(handle, runs)
        started = time.monotonic()
        asyncio.run(create_clusters(handle, args.clusters, args.workers))
        created = time.monotonic() - started
        running = asyncio.run(wait_running(handle, apps, timeout=600))
        published = asyncio.run(publish_records(handle))
        print(
            f"{apps} applications created in {created:.1f} s, all running "
            f"{running:.1f} s later; {published} node records written",
            file=sys.stderr,
        )
        list_times, listing = raycai_list(handle, runs)
        assert listing.count("proj-") >= args.clusters, listing
        stats, rows, snapshot = asyncio.run(poll_ticks(handle, ticks))
        lists, files = asyncio.run(tick_costs(handle, rounds))
        load_measured = load_average()
    first, ours = asyncio.run(refresh_times(snapshot, rounds, naive=False))
    naive_first, naive = asyncio.run(refresh_times(snapshot, rounds, naive=True))
    members = sum(len(m) for m in snapshot.members.values())
    per_tick = stats["total"] / ticks
    list_calls = sum(n for route, n in stats["by_route"].items() if "/applications" in route)

    report = Report(
        f"P10 {args.clusters} clusters, {apps} applications: clusters screen and `raycai list`"
    )
    report.notes.append(
        "stub applications (a readiness answer, then `sleep`), no Ray; node records and "
        "head.json written as the launchers would"
    )
    report.notes.append(f"{load_before} at the start; {load_measured} after the measurements")
    report.notes.append(
        f"poll: {ticks} whole ticks, routes {stats['by_route']}; the snapshot held "
        f"{members} applications, {len(snapshot.summaries)} clusters; table rows {rows}"
    )
    report.notes.append(
        f"pages per list: 1 (page_size 1000 asked; {-(-members // 10)} at the API's default "
        f"page size of 10, {-(-members // 100)} at 100)"
    )
    report.notes.append(
        f"raycai list {spread(list_times)} s; empty project {spread(empty_list)} s; "
        f"refresh {spread(ours, 1)} ms"
    )
    report.notes.append(
        f"poll tick, list call (on the event loop) median {median(lists):.1f} ms, "
        f"project files (thread) median {median(files):.1f} ms"
    )
    report.add("CML API requests per poll tick", per_tick, REQUESTS_TARGET)
    report.add("application list pages per poll tick", list_calls / ticks, REQUESTS_TARGET)
    report.add("refresh, every row changed, median (ms)", median(ours), REFRESH_TARGET_MS, " ms")
    report.add(
        "refresh, 90th percentile (ms)",
        statistics.quantiles(ours, n=10)[-1] if len(ours) > 1 else ours[0],
        unit=" ms",
    )
    report.add("first fill of the table (ms)", first, unit=" ms")
    report.add("naive clear + add rows, median (ms, baseline)", median(naive), unit=" ms")
    report.add("naive first fill (ms, baseline)", naive_first, unit=" ms")
    report.add("raycai list, median (s)", median(list_times), LIST_TARGET_S, " s")
    report.add("raycai list, empty project, median (s, baseline)", median(empty_list), unit=" s")
    report.finish()


if __name__ == "__main__":
    main()
