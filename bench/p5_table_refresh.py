"""P5: one refresh of the cluster table with 500 worker rows where 10% changed <= 30 ms,
with the cursor row kept.

A refresh is what raycai-tui does on a poll: reconcile the table with the new view (the
widget `AppsTable.show`), let Textual handle the resulting messages, and draw the screen.
Baseline in the same run: the naive refresh (clear the DataTable, add every row).

Usage: python bench/p5_table_refresh.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from datetime import datetime, timedelta, timezone

from _common import Report

TARGET_MS = 30.0
WORKERS = 500
NOW = datetime.now(tz=timezone.utc)


def views(rounds: int):  # type: ignore[no-untyped-def]
    """A view of 500 workers, then `rounds` views each changing another 10% of the rows."""
    from raycai_core.cluster.apps import ClusterApp
    from raycai_core.cluster.desired import Desired
    from raycai_core.cluster.records import NodeRecord
    from raycai_core.cluster.view import RayNodeInfo, merge_cluster
    from raycai_core.cml.models import Application
    from raycai_core.naming import app_environment, app_name
    from raycai_core.ray.matching import node_labels
    from raycai_core.spec import spec_from_flags

    spec = spec_from_flags(name="big", runtime="rt", workers=WORKERS, cpu=2, memory=8)
    nodes = ["head"] + [f"worker-{k}" for k in range(1, WORKERS + 1)]

    def member(node: str, status: str) -> ClusterApp:
        app = Application(
            id=f"id-{node}",
            name=app_name("big", node),
            status=status,
            cpu=2,
            memory=8,
            environment=app_environment("big", node),
            created_at=NOW - timedelta(hours=1),
            running_at=NOW,
        )
        return ClusterApp(app=app, cluster="big", node=node)

    def ray(node: str, used: float) -> RayNodeInfo:
        return RayNodeInfo(
            node_id=f"ray-{node}",
            node_name=app_name("big", node),
            state="ALIVE",
            cpu=(used, 2.0),
            memory=(0.0, 6e9),
            start_time=NOW.timestamp(),
            labels=node_labels("big", node),
        )

    status = dict.fromkeys(nodes, "running")
    phase = dict.fromkeys(nodes, "joined")
    used = dict.fromkeys(nodes, 0.0)
    result = []
    for round_no in range(rounds + 1):
        if round_no:
            for k in range(round_no % 10, WORKERS, 10):  # another 10% of the workers
                node = f"worker-{k + 1}"
                used[node] = 1.0 if used[node] == 0 else 0.0
                phase[node] = "joined" if phase[node] != "joined" else "rejoining"
                status[node] = "running" if status[node] != "running" else "starting"
        members = [member(n, status[n]) for n in nodes]
        records = {n: NodeRecord(node=n, role="worker", phase=phase[n]) for n in nodes}
        rays = [ray(n, used[n]) for n in nodes if phase[n] == "joined"]
        result.append(merge_cluster("big", Desired(spec=spec), members, records, None, rays))
    return result


async def measure(rounds: int, naive: bool) -> tuple[list[float], bool]:
    from textual.app import App, ComposeResult

    from raycai_tui.widgets.apps_table import AppsTable, view_rows

    class Bench(App[None]):
        def compose(self) -> ComposeResult:
            yield AppsTable(id="table")

    all_views = views(rounds)
    timings: list[float] = []
    kept = True
    app = Bench()
    async with app.run_test(size=(180, 50)) as pilot:
        table = app.query_one(AppsTable)

        def refresh(view) -> None:  # type: ignore[no-untyped-def]
            if naive:
                table.clear()
                for key, cells in view_rows(view):
                    table.add_row(*cells, key=key)
            else:
                table.show(view)

        refresh(all_views[0])
        await pilot.pause()
        table.move_cursor(row=250)
        await pilot.pause()
        selected = table.selected_key
        for view in all_views[1:]:
            gc.collect()
            started = time.perf_counter()
            refresh(view)
            # pause(0): process the messages the refresh caused, then draw the screen.
            # (pause() without a delay would add Textual's wait-for-CPU-idle on top.)
            await pilot.pause(0)
            timings.append((time.perf_counter() - started) * 1000)
            kept = kept and table.selected_key == selected and table.cursor_row == 250
    return timings, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    args = parser.parse_args()
    rounds = 10 if args.quick else args.rounds
    ours, kept = asyncio.run(measure(rounds, naive=False))
    naive, naive_kept = asyncio.run(measure(rounds, naive=True))
    report = Report(f"P5 cluster table refresh, {WORKERS} worker rows, 10% changed")
    report.notes.append(
        f"{rounds} refreshes each: reconcile + Textual messages + screen drawn; "
        "180x50 terminal, cursor on row 250"
    )
    report.notes.append(f"cursor row kept: raycai {kept}, naive {naive_kept}")
    report.add(
        "naive clear + add 500 rows, median (ms, baseline)", statistics.median(naive), unit=" ms"
    )
    report.add("raycai AppsTable.show, median (ms)", statistics.median(ours), TARGET_MS, unit=" ms")
    report.add(
        "raycai AppsTable.show, 90th percentile (ms)",
        statistics.quantiles(ours, n=10)[-1],
        unit=" ms",
    )
    report.add("raycai / naive", statistics.median(ours) / statistics.median(naive), unit="x")
    report.add("cursor row kept (1 = yes)", 1.0 if kept else 0.0, 1.0, lower_is_better=False)
    report.finish()


if __name__ == "__main__":
    main()
