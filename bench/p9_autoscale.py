"""P9: Ray's autoscaler on a raycai cluster (local workspace, real Ray).

Scale-up: from a task that cannot be scheduled (it needs 2 CPUs; the head has 1) to a new
worker ALIVE in Ray, minus the pod start delay L the workspace adds before each app starts
(standing for CML's scheduling): target <= 15 s.
Scale-down: from the moment the worker is idle again (its task returned) to its
application removed from the API's list: target <= idle timeout + 15 s.

One cluster (min 0, max 1); each round submits a job whose task needs the worker, waits for
the worker to go after the idle timeout, and measures both. Medians over the rounds.
Usage: python bench/p9_autoscale.py [--rounds N] [--pod-delay L] [--idle-timeout S] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import Report, ensure_private_netns, median, short_tmpdir, spread

UP_TARGET_S = 15.0
DOWN_MARGIN_S = 15.0
POLL_S = 0.1
RAY_START_RE = re.compile(r"ray start took ([0-9.]+) s")
# Runs on the head as a Ray job: its task needs 2 CPUs, which only a new worker has.
JOB = """\
import time, ray
ray.init()

@ray.remote(num_cpus=2)
def on_a_worker():
    time.sleep(1.0)
    return ray.get_runtime_context().get_node_id()

print("SUBMITTED", repr(time.time()), flush=True)
node = ray.get(on_a_worker.remote())
print("DONE", repr(time.time()), node, flush=True)
"""


def alive_workers(url: str, token: str, cluster: str) -> set[str]:
    answer = httpx.get(
        f"{url}/api/v0/nodes",
        params={"limit": 100, "detail": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=2.0,
    )
    answer.raise_for_status()
    nodes = answer.json()["data"]["result"]["result"]
    head = f"raycai-{cluster}-head"
    return {n["node_name"] for n in nodes if n["state"] == "ALIVE" and n["node_name"] != head}


def worker_app_count(handle: object, cluster: str) -> int:
    url, key, project = handle.url, handle.api_key, handle.project_id  # type: ignore[attr-defined]
    answer = httpx.get(
        f"{url}/api/v2/projects/{project}/applications",
        params={"search_filter": json.dumps({"name": f"raycai-{cluster}-worker-"})},
        headers={"Authorization": f"Bearer {key}"},
        timeout=5.0,
    )
    answer.raise_for_status()
    return len(answer.json()["applications"])


@dataclass
class Round:
    up: float  # unschedulable task -> new worker ALIVE
    down: float  # worker idle -> its application removed
    decided: float  # unschedulable task -> the autoscaler created the application
    ray_start: float  # the worker's `ray start`, as its launcher measured it


def one_round(handle: object, paths: object, cluster: str, job_file: Path) -> Round:
    from raycai_core.cluster.autoscaler_status import read_decisions
    from raycai_core.cluster.records import read_head_address, read_token

    head = read_head_address(paths)  # type: ignore[arg-type]
    token = read_token(paths)  # type: ignore[arg-type]
    assert head is not None and token is not None
    jobs = httpx.Client(
        base_url=head.dashboard_url,
        headers={"Authorization": f"Bearer {token.reveal()}"},
        timeout=30,
    )
    job = jobs.post("/api/jobs/", json={"entrypoint": f"python {job_file}"}).json()
    submission = job["submission_id"]
    alive_at = None
    while alive_at is None:
        if alive_workers(head.dashboard_url, token.reveal(), cluster):
            alive_at = time.time()
        time.sleep(POLL_S)
    while jobs.get(f"/api/jobs/{submission}").json()["status"] not in (
        "SUCCEEDED",
        "FAILED",
        "STOPPED",
    ):
        time.sleep(POLL_S)
    logs = jobs.get(f"/api/jobs/{submission}/logs").json()["logs"]
    jobs.close()
    stamps = {
        line.split()[0]: float(line.split()[1])
        for line in logs.splitlines()
        if line.startswith(("SUBMITTED ", "DONE "))
    }
    if set(stamps) != {"SUBMITTED", "DONE"}:
        raise SystemExit(f"the job failed:\n{logs[-3000:]}")
    while worker_app_count(handle, cluster):
        time.sleep(POLL_S)
    removed_at = time.time()
    launched = [d.at for d in read_decisions(paths, 100) if d.action == "launched" and d.at]  # type: ignore[arg-type]
    took = RAY_START_RE.findall(paths.node_log("worker-1").read_text())  # type: ignore[attr-defined]
    return Round(
        up=alive_at - stamps["SUBMITTED"],
        down=removed_at - stamps["DONE"],
        decided=launched[-1] - stamps["SUBMITTED"] if launched else float("nan"),
        ray_start=float(took[-1]) if took else float("nan"),
    )


async def bring_up(handle: object, cluster: str, idle_timeout: float) -> object:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    spec = spec_from_flags(
        name=cluster,
        runtime=DEFAULT_RUNTIMES[0]["image_identifier"],
        head_cpu=1,
        head_memory=1,
        cpu=2,
        memory=1,
        min_workers=0,
        max_workers=1,
        idle_timeout=idle_timeout,
    )
    async with CMLClient(handle.credentials()) as cml:  # type: ignore[attr-defined]
        ops = ClusterManager(cml, handle.project_dir)  # type: ignore[attr-defined]
        try:
            await ops.up(spec, timeout=300)
        finally:
            await ops.observer.aclose()
    return ops.paths(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pod-delay", type=float, default=2.0, help="L, seconds")
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.cluster.records import read_node_record
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    rounds = 1 if args.quick else args.rounds
    cluster = "p9"
    ups: list[float] = []
    downs: list[float] = []
    decided: list[float] = []
    ray_starts: list[float] = []
    report = Report("P9 autoscaling: unschedulable task -> new worker, idle -> removed")
    with short_tmpdir("p9-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            paths = asyncio.run(bring_up(handle, cluster, args.idle_timeout))
            deadline = time.monotonic() + 60
            while (record := read_node_record(paths, "head")) is None or (
                record.autoscaler is None or record.autoscaler.state != "running"
            ):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the autoscaler did not start: {record}")
                time.sleep(0.2)
            handle.update_config(start_delay_s=args.pod_delay)
            job_file = handle.project_dir / "p9_job.py"
            job_file.write_text(JOB)
            for number in range(1, rounds + 1):
                result = one_round(handle, paths, cluster, job_file)
                ups.append(result.up - args.pod_delay)
                downs.append(result.down)
                decided.append(result.decided)
                ray_starts.append(result.ray_start)
                print(
                    f"round {number}: task -> worker ALIVE {result.up:.2f} s "
                    f"({result.up - args.pod_delay:.2f} s without L; of which task -> "
                    f"application created {result.decided:.2f} s, the worker's ray start "
                    f"{result.ray_start:.2f} s), idle -> removed {result.down:.2f} s",
                    flush=True,
                )
    report.notes.append(
        f"L (pod start delay) {args.pod_delay:g} s, idle timeout {args.idle_timeout:g} s, "
        f"autoscaler pass every 2 s, 1-CPU head, 2-CPU worker, min 0 max 1"
    )
    report.notes.append(f"scale-up minus L {spread(ups)} s; scale-down {spread(downs)} s")
    report.notes.append(
        f"of the scale-up: task -> application created {spread(decided)} s (the autoscaler), "
        f"the worker's `ray start` {spread(ray_starts)} s (Ray itself)"
    )
    up_name = "task unschedulable -> new worker ALIVE, minus L (s)"
    report.add(up_name, median(ups), UP_TARGET_S, " s")
    report.add("task unschedulable -> application created (s)", median(decided), unit=" s")
    report.add("the new worker's ray start (s)", median(ray_starts), unit=" s")
    report.add(
        "worker idle -> application removed (s)",
        median(downs),
        args.idle_timeout + DOWN_MARGIN_S,
        " s",
    )
    report.finish()


if __name__ == "__main__":
    main()
