"""P12: CML API requests made by an idle autoscaled cluster (local workspace, real Ray).

An autoscaled cluster (min 0, max 1) with nothing pending and nothing launching, and no
raycai client running: only the head's launcher, its autoscaler and the autoscaler's CML
provider are alive. The workspace's request counter (`POST /_local/stats/reset`, then
`GET /_local/stats` after --seconds) over the window, as requests per minute: target <= 6.
Before the provider reused its listing (it listed every 2 s): 29 list requests in 60 s.

Then P9 on the same cluster in the same run (bench/p9_autoscale.py's rounds): the reused
listing must not slow the scale-up (task unschedulable -> new worker ALIVE, minus L).
Usage: python bench/p12_idle_requests.py [--seconds S] [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from _common import Report, ensure_private_netns, median, short_tmpdir, spread
from p9_autoscale import (
    DOWN_MARGIN_S,
    JOB,
    UP_TARGET_S,
    bring_up,
    one_round,
    worker_app_count,
)

TARGET_PER_MIN = 6.0
BEFORE_60S = 29  # list requests in 60 s by an idle cluster when the provider listed every 2 s
SETTLE_S = 15.0  # after the autoscaler starts: `up`'s own traffic over, listings settled


def idle_requests(url: str, key: str, seconds: float) -> dict:
    """The workspace's /api/v2 request counts over `seconds` of doing nothing here (the
    /_local hooks are not counted)."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as local:
        local.post("/_local/stats/reset").raise_for_status()
        time.sleep(seconds)
        answer = local.get("/_local/stats")
        answer.raise_for_status()
        return answer.json()


def wait_autoscaler(paths: object) -> None:
    from raycai_core.cluster.records import read_node_record

    deadline = time.monotonic() + 60
    while (record := read_node_record(paths, "head")) is None or (  # type: ignore[arg-type]
        record.autoscaler is None or record.autoscaler.state != "running"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"the autoscaler did not start: {record}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the idle window")
    parser.add_argument("--rounds", type=int, default=3, help="P9 rounds")
    parser.add_argument("--pod-delay", type=float, default=2.0, help="L for P9, seconds")
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a 20 s window, one P9 round")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    seconds = min(args.seconds, 20.0) if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    cluster = "p12"
    report = Report("P12 CML API requests by an idle autoscaled cluster; P9 in the same run")
    with short_tmpdir("p12-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            paths = asyncio.run(bring_up(handle, cluster, args.idle_timeout))
            wait_autoscaler(paths)
            time.sleep(SETTLE_S)
            stats = idle_requests(handle.url, handle.api_key, seconds)
            if worker_app_count(handle, cluster):
                raise SystemExit("a worker was created during the idle window: not idle")
            print(f"idle {seconds:g} s: {stats['total']} requests, {stats['by_route']}")

            handle.update_config(start_delay_s=args.pod_delay)
            job_file = handle.project_dir / "p9_job.py"
            job_file.write_text(JOB)
            ups: list[float] = []
            downs: list[float] = []
            decided: list[float] = []
            for number in range(1, rounds + 1):
                result = one_round(handle, paths, cluster, job_file)
                ups.append(result.up - args.pod_delay)
                downs.append(result.down)
                decided.append(result.decided)
                print(
                    f"P9 round {number}: task -> worker ALIVE minus L {ups[-1]:.2f} s (task -> "
                    f"application created {result.decided:.2f} s, ray start "
                    f"{result.ray_start:.2f} s), idle -> removed {result.down:.2f} s",
                    flush=True,
                )
    per_minute = stats["total"] * 60.0 / seconds
    routes = ", ".join(f"{route} {n}" for route, n in sorted(stats["by_route"].items()))
    report.notes.append(
        f"P12: one cluster (1-CPU head, min 0 max 1 of 2-CPU workers, idle timeout "
        f"{args.idle_timeout:g} s), idle window {seconds:g} s after {SETTLE_S:g} s of settling, "
        f"no raycai client; {stats['total']} requests: {routes or 'none'}"
    )
    report.notes.append(
        f"before (listing every 2 s): {BEFORE_60S} requests in 60 s = {BEFORE_60S} per minute"
    )
    report.notes.append(
        f"P9: L {args.pod_delay:g} s; scale-up minus L {spread(ups)} s; "
        f"scale-down {spread(downs)} s"
    )
    report.add("P12 idle cluster: CML API requests per minute", per_minute, TARGET_PER_MIN)
    report.add("P12 before, for reference (list every 2 s)", float(BEFORE_60S))
    report.add(
        "P9 task unschedulable -> new worker ALIVE, minus L (s)", median(ups), UP_TARGET_S, " s"
    )
    report.add("P9 task unschedulable -> application created (s)", median(decided), unit=" s")
    report.add(
        "P9 worker idle -> application removed (s)",
        median(downs),
        args.idle_timeout + DOWN_MARGIN_S,
        " s",
    )
    report.finish()


if __name__ == "__main__":
    main()
