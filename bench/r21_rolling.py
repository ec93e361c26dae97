"""R21: a rolling update of the workers' size (local workspace, real Ray, head + 2 workers,
1 -> 2 vCPU): the worst capacity while it runs, joined workers / the count, from Ray's own
node list sampled every 0.5 s (target = 1.0: never fewer), and the update's total time
against the way it was done before, `raycai down` then `raycai up` of the same cluster with
the new size (during which the capacity is 0).

Usage: python bench/r21_rolling.py [--quick]   (one round either way: it starts 3 clusters)
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import TYPE_CHECKING

from _common import Report, ensure_private_netns, load_average, short_tmpdir
from p13_head_proxy import raycai  # the CLI as a user runs it, one copy

if TYPE_CHECKING:
    from raycai_core.cluster.layout import ClusterPaths

NAME = "r21"
WORKERS = 2


def flags(cpu: int) -> list[str]:
    from raycai_core.local.config import DEFAULT_RUNTIMES

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    return ["--workers", str(WORKERS), "--cpu", str(cpu), "--memory", "1", "--head-cpu", "1",
            "--head-memory", "1", "--runtime", runtime, "--timeout", "600"]  # fmt: skip


class Sampler(threading.Thread):
    """ALIVE workers of the cluster in Ray's node list, every 0.5 s."""

    def __init__(self, paths: ClusterPaths) -> None:
        super().__init__(daemon=True)
        self.paths = paths
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            count = asyncio.run(self.alive())
            if count is not None:
                self.samples.append(count)
            self.stop.wait(0.5)

    async def alive(self) -> int | None:
        from raycai_core.cluster.records import read_head_address, read_token
        from raycai_core.ray.client import RayClient

        head = read_head_address(self.paths)
        if head is None:
            return None
        try:
            async with RayClient(head.dashboard_url, token=read_token(self.paths)) as ray:
                nodes = await ray.nodes()
        except Exception:
            return None
        return sum(1 for n in nodes if n.alive and n.labels.get("raycai/group") == "worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the same single round")
    parser.parse_args()
    ensure_private_netns()
    from raycai_core.cluster.layout import ClusterPaths
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    report = Report("R21 rolling update of the workers' size, head + 2 workers")
    with short_tmpdir("r21-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            raycai(handle, "up", NAME, *flags(1))
            try:
                sampler = Sampler(ClusterPaths(handle.project_dir, NAME))
                sampler.start()
                started = time.monotonic()
                raycai(handle, "up", NAME, *flags(2), "--yes")
                update = time.monotonic() - started
                sampler.stop.set()
                sampler.join(timeout=10)
                print(f"update: {update:.1f} s; samples {sampler.samples}; {load_average()}")
                started = time.monotonic()
                raycai(handle, "down", NAME, "--yes")
                raycai(handle, "up", NAME, *flags(2))
                recreate = time.monotonic() - started
                print(f"down + up: {recreate:.1f} s; {load_average()}")
            finally:
                raycai(handle, "down", NAME, "--yes")
    worst = min(sampler.samples) / WORKERS
    report.notes.append(
        f"{len(sampler.samples)} samples of ALIVE workers during the update: min "
        f"{min(sampler.samples)}, max {max(sampler.samples)}; down + up has 0 workers "
        "from the down until the new ones join"
    )
    report.add("worst capacity during the update (joined / count)", worst, 1.0, "", False)
    report.add("update total time", update, None, " s")
    report.add("down + up of the same cluster, new size (same run)", recreate, None, " s")
    report.add("update / (down + up)", update / recreate, None, "x")
    report.finish()


if __name__ == "__main__":
    main()
