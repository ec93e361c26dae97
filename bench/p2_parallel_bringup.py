"""P2: bring-up under a simulated pod start delay L (default 20 s) with 16 workers.

Every app waits L in the local workspace before its process starts, as a pod waits to be
scheduled. A stand-in for Ray (bench/fake_ray.py: GCS port, node registration, dashboard
node list) replaces `ray start`, so the figure is about raycai's orchestration.

Three strategies, each in a fresh workspace of the same run:
- raycai (`ClusterManager.up`): every application requested at once, the head first; the
  pods wait out their start delays together and the worker launchers wait for the head's
  published address by themselves. Floor: 1 L plus the head's start and the joins.
- head-first (the previous raycai, a baseline kept here as code): the workers are created
  only once the head has published its address. Floor: 2 L.
- seed (the seed's sequential strategy, a baseline kept here as code): once the head is up,
  the workers one by one, each followed by a fixed 10 s sleep. Floor: 2 L + 16 x 10 s.
Target: raycai's total / L <= 1.3 (median of the rounds; the range is printed).

Usage: python bench/p2_parallel_bringup.py [--delay 20] [--workers 16] [--rounds 3] [--quick]
(--quick: one round, and the seed's time estimated from the head-first run's phases)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _common import Report, ensure_private_netns, load_average, median, short_tmpdir, spread

if TYPE_CHECKING:
    from raycai_core.cluster.lifecycle import ClusterManager

TARGET = 1.3
SEED_SLEEP_S = 10.0


def strategies() -> dict[str, type[ClusterManager]]:
    """raycai's own `up` and the two earlier strategies, as ClusterManager subclasses."""
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cluster.view import ClusterView
    from raycai_core.naming import HEAD_NODE, worker_node
    from raycai_core.spec import ClusterSpec

    class HeadFirst(ClusterManager):
        """raycai before issue 12: workers only after the head published its address."""

        async def up(
            self, spec: ClusterSpec, *, wait: bool = True, timeout: float | None = 900.0
        ) -> ClusterView:
            deadline = None if timeout is None else time.monotonic() + timeout
            await asyncio.to_thread(self._write_spec, spec)
            members = await self.members(spec.name)
            head = await self._ensure_head(
                spec, next((m for m in members if m.node == HEAD_NODE), None)
            )
            address = await self._wait_head(spec, head, deadline)
            self.report("head-ready", f"head ready: GCS {address.gcs_address}")
            await self._converge_workers(spec, [m for m in members if m.node != HEAD_NODE])
            return await self.wait_ready(spec.name, deadline=deadline)

    class Seed(ClusterManager):
        """The seed: once the head is up, each worker created, then a fixed sleep."""

        async def up(
            self, spec: ClusterSpec, *, wait: bool = True, timeout: float | None = 900.0
        ) -> ClusterView:
            deadline = None if timeout is None else time.monotonic() + timeout
            await asyncio.to_thread(self._write_spec, spec)
            head = await self._ensure_head(spec, None)
            address = await self._wait_head(spec, head, deadline)
            self.report("head-ready", f"head ready: GCS {address.gcs_address}")
            for index in range(1, spec.workers.count + 1):
                await self._create(spec, worker_node(index))
                await asyncio.sleep(SEED_SLEEP_S)
            return await self.wait_ready(spec.name, deadline=deadline)

    return {"raycai": ClusterManager, "head-first": HeadFirst, "seed": Seed}


async def bring_up(
    tmp: Path, manager: type[ClusterManager], label: str, delay: float, workers: int
) -> tuple[float, float]:
    """Seconds until every node joined, and until the head was ready, for one strategy."""
    from fake_ray import install

    from raycai_core.cluster.types import Progress
    from raycai_core.cml.client import CMLClient
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    config = WorkspaceConfig(start_delay_s=delay, stop_grace_s=5.0)
    head_ready = 0.0
    with run_workspace_in_thread(tmp / f"ws-{label}", config) as handle:
        install(Path(handle.project_dir) / ".venv")
        spec = spec_from_flags(
            name="p2", runtime=runtime, workers=workers, cpu=1, memory=1, head_cpu=1, head_memory=1
        )
        started = time.monotonic()

        def progress(event: Progress) -> None:
            nonlocal head_ready
            if event.step == "head-ready":
                head_ready = time.monotonic() - started
            if event.step in ("head-ready", "joined"):
                print(f"  [{label} {time.monotonic() - started:6.2f}s] {event.message}")

        async with CMLClient(handle.credentials()) as cml:
            ops = manager(cml, handle.project_dir, progress=progress)
            view = await ops.up(spec, timeout=30 * delay + 300)
            total = time.monotonic() - started
            assert view.ready and view.nodes_alive == workers + 1, view
            await ops.down(spec.name)
            await ops.observer.aclose()
    return total, head_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=20.0, help="pod start delay L, seconds")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="of raycai and head-first")
    parser.add_argument("--quick", action="store_true", help="one round; the seed estimated")
    args = parser.parse_args()
    ensure_private_netns()
    sys.path.insert(0, str(Path(__file__).parent))
    rounds = 1 if args.quick else args.rounds
    managers = strategies()
    totals: dict[str, list[float]] = {name: [] for name in managers}
    head_first_ready: list[float] = []
    load_before = load_average()
    with short_tmpdir() as tmp:
        for round_no in range(rounds):
            # Alternate which strategy goes first, so that a load change hits both alike.
            order = ["raycai", "head-first"] if round_no % 2 == 0 else ["head-first", "raycai"]
            for name in order:
                total, ready = asyncio.run(
                    bring_up(tmp, managers[name], f"{name}{round_no}", args.delay, args.workers)
                )
                totals[name].append(total)
                if name == "head-first":
                    head_first_ready.append(ready)
                print(f"round {round_no + 1} {name}: {total:.2f} s = {total / args.delay:.3f} L")
        if not args.quick:
            seed = bring_up(tmp, managers["seed"], "seed", args.delay, args.workers)
            totals["seed"].append(asyncio.run(seed)[0])
    if not totals["seed"]:
        # The seed's phases: head ready, the sleeps, then the last worker's own start.
        ready = median(head_first_ready)
        last_worker = median(totals["head-first"]) - ready
        totals["seed"].append(ready + args.workers * SEED_SLEEP_S + last_worker)
    delay = args.delay
    ours = median(totals["raycai"])
    report = Report(f"P2 bring-up, {args.workers} workers, pod start delay L = {delay:g} s")
    report.notes.append("Ray replaced by bench/fake_ray.py; the rest is the real raycai path")
    report.notes.append(f"{load_before} at the start")
    for name, values in totals.items():
        estimated = " (estimated from head-first's phases)" if args.quick and name == "seed" else ""
        ratios = [v / delay for v in values]
        report.notes.append(f"{name}: total / L {spread(ratios, 3)}{estimated}")
    report.add("raycai, all at once: all nodes joined (s, median)", ours, unit=" s")
    report.add(
        "baseline head-first (previous raycai) (s, median)", median(totals["head-first"]), unit=" s"
    )
    report.add("baseline seed, sequential + 10 s sleeps (s)", median(totals["seed"]), unit=" s")
    report.add("raycai total / L", ours / delay, TARGET)
    report.add("head-first total / L (baseline)", median(totals["head-first"]) / delay)
    report.add("seed total / L (baseline)", median(totals["seed"]) / delay)
    report.add("head-first / raycai", median(totals["head-first"]) / ours, unit="x")
    report.add("seed / raycai", median(totals["seed"]) / ours, unit="x")
    report.finish()


if __name__ == "__main__":
    main()
