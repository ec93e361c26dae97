"""P2: bring-up under a simulated pod start delay L (default 20 s) with 16 workers.

Every app waits L in the local workspace before its process starts, as a pod waits to be
scheduled. A stand-in for Ray (bench/fake_ray.py: GCS port, node registration, dashboard
node list) replaces `ray start`, so the figure is about raycai's orchestration: workers
created in parallel as soon as the head is up, readiness by event rather than sleeps.
The floor is 2 L (the head's delay, then the workers' delay). Target: total / L <= 2.3.
Also prints what the seed's strategy (workers one by one, a fixed 10 s sleep each) takes.

Usage: python bench/p2_parallel_bringup.py [--delay 20] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from _common import Report, ensure_private_netns, short_tmpdir

TARGET = 2.3
SEED_SLEEP_S = 10.0


async def bring_up(tmp: Path, delay: float, workers: int) -> tuple[float, float]:
    from fake_ray import install

    from raycai_core.cluster.lifecycle import ClusterManager, Progress
    from raycai_core.cml.client import CMLClient
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    config = WorkspaceConfig(start_delay_s=delay, restart_delay_s=1.0, stop_grace_s=5.0)
    head_ready = 0.0
    with run_workspace_in_thread(tmp / "ws", config) as handle:
        install(Path(handle.project_dir) / ".venv")
        spec = spec_from_flags(
            name="p2", runtime=runtime, workers=workers, cpu=1, memory=1, head_cpu=1, head_memory=1
        )
        started = time.monotonic()

        def progress(event: Progress) -> None:
            nonlocal head_ready
            if event.step == "head-ready":
                head_ready = time.monotonic() - started
            print(f"[{time.monotonic() - started:6.2f}s] {event.message}", file=sys.stderr)

        async with CMLClient(handle.credentials()) as cml:
            ops = ClusterManager(cml, handle.project_dir, progress=progress)
            view = await ops.up(spec, timeout=10 * delay + 120)
            total = time.monotonic() - started
            assert view.ready and view.nodes_alive == workers + 1, view
            await ops.down(spec.name)
            await ops.observer.aclose()
    return total, head_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=20.0, help="pod start delay L, seconds")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="same as the defaults")
    args = parser.parse_args()
    ensure_private_netns()
    sys.path.insert(0, str(Path(__file__).parent))
    with short_tmpdir() as tmp:
        total, head_ready = asyncio.run(bring_up(tmp, args.delay, args.workers))
    worker_part = total - head_ready
    sequential = head_ready + args.workers * SEED_SLEEP_S + worker_part
    report = Report(f"P2 bring-up, {args.workers} workers, pod start delay L = {args.delay:g} s")
    report.notes.append("Ray replaced by bench/fake_ray.py; the rest is the real raycai path")
    report.notes.append(
        f"seed strategy estimate = head ready {head_ready:.1f} s + {args.workers} x "
        f"{SEED_SLEEP_S:g} s sleeps + the last worker's start {worker_part:.1f} s"
    )
    report.add("head ready (s)", head_ready, unit=" s")
    report.add("all nodes joined, raycai (s)", total, unit=" s")
    report.add("seed's sequential, sleep-per-worker strategy (s, estimate)", sequential, unit=" s")
    report.add("raycai total / L", total / args.delay, TARGET)
    report.add("seed strategy / raycai", sequential / total, unit="x", lower_is_better=False)
    report.finish()


if __name__ == "__main__":
    main()
