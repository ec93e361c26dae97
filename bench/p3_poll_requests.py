"""P3: CML API requests per dashboard poll tick, with 200 worker apps: <= 1, and the same
with 2 workers (independent of the worker count).

raycai-tui runs headless on the local workspace with its cluster screen open; the figure is
the workspace's request counter divided by the app's completed polls over the same window.
The 200 workers wait in STARTING behind the workspace's quota (no process each), the head
runs a stand-in for Ray (bench/fake_ray.py): what is measured is the TUI's API traffic.

Usage: python bench/p3_poll_requests.py [--workers 200] [--seconds 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from _common import Report, ensure_private_netns, short_tmpdir

TARGET = 1.0
LIST_ROUTE = "GET /api/v2/projects/{project_id}/applications"


async def requests_per_tick(tmp: Path, workers: int, seconds: float) -> tuple[float, int, dict]:
    from fake_ray import install

    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags
    from raycai_core.target import Target
    from raycai_tui.app import RaycaiApp, Settings
    from raycai_tui.screens.cluster import ClusterScreen

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    config = WorkspaceConfig(quota_cpu=1.0, stop_grace_s=5.0)  # the head runs, workers wait
    with run_workspace_in_thread(tmp / f"ws{workers}", config) as handle:
        install(Path(handle.project_dir) / ".venv")
        spec = spec_from_flags(
            name="big", runtime=runtime, workers=workers, cpu=1, memory=1, head_cpu=1, head_memory=1
        )
        async with CMLClient(handle.credentials()) as cml:
            await ClusterManager(cml, handle.project_dir).up(spec, wait=False)
            target = Target(handle.credentials(), Path(handle.project_dir), "local")
            app = RaycaiApp(Settings(poll_s=0.25, heal=False), target=target)
            async with app.run_test(size=(160, 50)) as pilot:
                while app.services is None or app.snapshot is None:
                    await pilot.pause(0.1)
                await app.push_screen(ClusterScreen("big"))
                await pilot.pause(1.0)
                handle.reset_stats()
                polls = app.polls
                await pilot.pause(seconds)
                ticks = app.polls - polls
                stats = handle.stats()
            await ClusterManager(cml, handle.project_dir).down("big")
    return stats["total"] / max(ticks, 1), ticks, stats["by_route"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="4 s windows")
    args = parser.parse_args()
    ensure_private_netns()
    sys.path.insert(0, str(Path(__file__).parent))
    seconds = 4.0 if args.quick else args.seconds
    with short_tmpdir() as tmp:
        small, small_ticks, _ = asyncio.run(requests_per_tick(tmp, 2, seconds))
        big, big_ticks, routes = asyncio.run(requests_per_tick(tmp, args.workers, seconds))
    report = Report("P3 CML API requests per poll tick (raycai-tui, cluster screen open)")
    report.notes.append(
        f"{small_ticks} ticks with 2 workers, {big_ticks} with {args.workers}; "
        f"routes called with {args.workers}: {routes}"
    )
    report.add("requests per tick, 2 workers (baseline)", small, TARGET)
    report.add(f"requests per tick, {args.workers} workers", big, TARGET)
    report.add(f"ratio {args.workers} workers / 2 workers", big / small if small else 0.0, 1.05)
    report.finish()


if __name__ == "__main__":
    main()
