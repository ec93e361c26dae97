"""P8: Ray Jobs on a raycai cluster (local workspace, real Ray head).

Submit: wall time of `raycai job submit NAME -- python -c 'print(1)'` (no wait) against Ray's
own `ray job submit --no-wait --address <dashboard> -- python -c 'print(1)'` (with the
exports of `raycai env NAME`, which set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH), both
real processes timed end to end, in alternating rounds on the same cluster: ratio of the
medians <= 0.5. Each job is waited for (in the bench, over HTTP) before the next submit, so
no job runs while another command is timed; one untimed submit of each warms the caches.

Jobs view: raycai-tui (headless, Textual's pilot) with the jobs screen of the cluster open,
polling every TICK. The bench submits short jobs over HTTP at random phases of the tick; a
child process polls GET /api/jobs/{id} every 25 ms: the first moment Ray reports each status
of a job, against the first moment the view's table holds it. Target: every status is shown
by the first poll of the view that starts after Ray reported it (polls started in between,
the one that showed it included: <= 1); the delay in ticks ((shown - reported) / TICK) is
printed too. The view's dashboard requests are counted at its httpx client over whole ticks
(from one completed poll to the next): target <= 1 per tick.

Usage: python bench/p8_jobs.py [--rounds N] [--jobs N] [--tick S] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from _common import Report, ensure_private_netns, load_average, median, short_tmpdir, spread

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle
    from raycai_core.ray.client import RayClient

NAME = "p8"
SUBMIT_TARGET = 0.5
DELAY_TARGET_TICKS = 1.0
REQUESTS_TARGET = 1.0
MIN_ROUNDS = 5
WATCH_S = 0.025  # the bench's own poll of Ray, much finer than the view's tick
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
ENTRYPOINT = ("python", "-c", "print(1)")
SUBMISSION_ID = re.compile(r"raysubmit_[A-Za-z0-9]+")
BIN = Path(sys.executable).parent


# -- the cluster ---------------------------------------------------------------------------------


async def bring_up(handle: WorkspaceHandle) -> None:
    """A head alone (1 CPU, 1 GB): jobs' entrypoints run on the head."""
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    spec = spec_from_flags(
        name=NAME,
        runtime=DEFAULT_RUNTIMES[0]["image_identifier"],
        workers=0,
        cpu=1,
        memory=1,
        head_cpu=1,
        head_memory=1,
    )
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            await ops.up(spec, timeout=300)
        finally:
            await ops.observer.aclose()


async def bring_down(handle: WorkspaceHandle) -> None:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient

    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            await ops.down(NAME)
        finally:
            await ops.observer.aclose()


def cli_env(handle: WorkspaceHandle) -> dict[str, str]:
    """A user's environment for `raycai` on this workspace, with no Ray variable yet."""
    dropped = ("CML_", "CDSW_", "RAYCAI_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        CML_HOST=handle.url,
        CML_API_KEY=handle.api_key,
        CML_PROJECT_ID=handle.project_id,
        RAYCAI_PROJECT_DIR=str(handle.project_dir),
    )
    return env


def exports_of(output: str) -> dict[str, str]:
    """The variables of `raycai env`'s `export K=V` lines."""
    exported = {}
    for line in output.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            exported[key] = value
    return exported


def dashboard_http(handle: WorkspaceHandle) -> httpx.Client:
    """The bench's own view of Ray: the Jobs API with the cluster's token."""
    from raycai_core.cluster.layout import ClusterPaths
    from raycai_core.cluster.records import read_token
    from raycai_core.work.access import load_access

    access = load_access(handle.project_dir, NAME)
    token = read_token(ClusterPaths(handle.project_dir, NAME))
    assert token is not None
    return httpx.Client(
        base_url=access.dashboard_url,
        headers={"Authorization": f"Bearer {token.reveal()}"},
        timeout=30,
    )


def wait_terminal(ray: httpx.Client, job_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ray.get(f"/api/jobs/{job_id}").json()["status"]
        if status in TERMINAL:
            return status
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} did not end within {timeout:g} s")


# -- submit: raycai job submit against ray job submit --no-wait ---------------------------------


def timed_submit(argv: list[str], env: dict[str, str], ray: httpx.Client) -> float:
    """Wall time of one submit command; the job it submitted is waited for (untimed)."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    found = SUBMISSION_ID.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(
            f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    status = wait_terminal(ray, found.group(0))
    if status != "SUCCEEDED":
        raise SystemExit(f"job {found.group(0)} from {argv[0]} ended {status}")
    return elapsed


def submit_rounds(handle: WorkspaceHandle, rounds: int) -> tuple[list[float], list[float]]:
    base = cli_env(handle)
    env_out = subprocess.run(
        [str(BIN / "raycai"), "env", NAME], env=base, capture_output=True, text=True, check=True
    ).stdout
    exports = exports_of(env_out)
    ray_env = {**base, **exports}  # what `eval "$(raycai env p8)"` gives a shell
    ours = [str(BIN / "raycai"), "job", "submit", NAME, "--", *ENTRYPOINT]
    theirs = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--no-wait",
        "--address",
        exports["RAY_API_SERVER_ADDRESS"],
        "--",
        *ENTRYPOINT,
    ]
    raycai_times: list[float] = []
    ray_times: list[float] = []
    with dashboard_http(handle) as ray:
        timed_submit(ours, base, ray)  # warm-up, not counted
        timed_submit(theirs, ray_env, ray)
        for number in range(rounds):
            # Alternate which goes first, so that a change of load hits both alike.
            if number % 2 == 0:
                raycai_times.append(timed_submit(ours, base, ray))
                ray_times.append(timed_submit(theirs, ray_env, ray))
            else:
                ray_times.append(timed_submit(theirs, ray_env, ray))
                raycai_times.append(timed_submit(ours, base, ray))
            print(
                f"round {number + 1}: raycai job submit {raycai_times[-1]:.3f} s, "
                f"ray job submit --no-wait {ray_times[-1]:.3f} s, "
                f"ratio {raycai_times[-1] / ray_times[-1]:.3f}",
                file=sys.stderr,
                flush=True,
            )
    return raycai_times, ray_times


# -- the jobs view: delay in ticks, requests per tick --------------------------------------------


# Ray's side, in its own process so that the TUI's event loop and this poll do not share a
# GIL: it prints "<id> <status> <monotonic s>" the first time each watched job has a status.
WATCHER = """
import sys, threading, time
from pathlib import Path
import httpx
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.records import read_token
from raycai_core.work.access import load_access

project_dir, name, every = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
access = load_access(project_dir, name)
token = read_token(ClusterPaths(project_dir, name)).reveal()
watched, seen, done = [], {}, threading.Event()

def read_ids():
    for line in sys.stdin:
        watched.append(line.strip())
    done.set()

threading.Thread(target=read_ids, daemon=True).start()
headers = {"Authorization": f"Bearer {token}"}
with httpx.Client(base_url=access.dashboard_url, headers=headers, timeout=30) as ray:
    while not done.is_set():
        for job_id in list(watched):
            status = ray.get(f"/api/jobs/{job_id}").json()["status"]
            if status not in seen.setdefault(job_id, set()):
                seen[job_id].add(status)
                print(job_id, status, repr(time.monotonic()), flush=True)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                watched.remove(job_id)
        done.wait(every)
"""


class RayWatcher:
    """Polls GET /api/jobs/{id} of the watched jobs every WATCH_S (in a child process): when
    Ray first reported each status (time.monotonic, the same clock in every process)."""

    def __init__(self, project_dir: Path) -> None:
        self.reported: dict[str, dict[str, float]] = {}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHER, str(project_dir), NAME, str(WATCH_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            job_id, status, at = line.split()
            self.reported.setdefault(job_id, {}).setdefault(status, float(at))

    def watch(self, job_id: str, status: str, at: float) -> None:
        self.reported.setdefault(job_id, {}).setdefault(status, at)
        assert self.process.stdin is not None
        self.process.stdin.write(f"{job_id}\n")
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        if self.process.wait(timeout=30) != 0:
            raise SystemExit(f"the bench's watcher of Ray failed ({self.process.returncode})")
        self.reader.join()


def view_classes():  # type: ignore[no-untyped-def]
    """The jobs screen, instrumented: its dashboard requests and what its table shows."""
    from raycai_core.work.session import ClusterWork
    from raycai_tui.screens.jobs import JobsScreen, JobsTable

    class CountingWork(ClusterWork):
        """The screen's own ClusterWork, counting each request its client sends."""

        def __init__(self, project_dir: Path, name: str) -> None:
            super().__init__(project_dir, name)
            self.requests: list[float] = []
            self._counted: set[int] = set()

        async def client(self) -> RayClient:
            client = await super().client()
            if id(client) not in self._counted:
                self._counted.add(id(client))
                client._http.event_hooks["request"].append(self._count)
            return client

        async def _count(self, request: httpx.Request) -> None:
            self.requests.append(time.monotonic())

    class TimedJobsScreen(JobsScreen):
        """Records when each poll was shown and when each job's status first sat in the table."""

        def __init__(self, project_dir: Path, tick: float) -> None:
            super().__init__(NAME, project_dir, poll_interval=tick)
            self.work = CountingWork(project_dir, NAME)
            self.shown_at: list[float] = []
            self.first_shown: dict[str, dict[str, float]] = {}

        def show_jobs(self) -> None:
            super().show_jobs()
            now = time.monotonic()
            self.shown_at.append(now)
            table = self.query_one(JobsTable)
            for key in table.keys:
                cells = table.cells_of(key)
                if cells:
                    self.first_shown.setdefault(key, {}).setdefault(str(cells[1]), now)

    return TimedJobsScreen


async def view_run(handle: WorkspaceHandle, tick: float, jobs: int, job_s: float):  # type: ignore[no-untyped-def]
    from raycai_core.target import Target
    from raycai_tui.app import RaycaiApp, Settings

    screen_class = view_classes()
    target = Target(handle.credentials(), Path(handle.project_dir), "local")
    # poll_s=0: the app itself polls nothing, so every dashboard request is the jobs view's.
    app = RaycaiApp(Settings(poll_s=0, heal=False), target=target)
    ray = dashboard_http(handle)
    watcher = RayWatcher(handle.project_dir)
    entrypoint = f"python -c 'import time; time.sleep({job_s:g})'"
    async with app.run_test(size=(170, 40)) as pilot:
        screen = screen_class(handle.project_dir, tick)
        await app.push_screen(screen)
        while len(screen.shown_at) < 2:
            await pilot.pause(0.05)
        counted_from = len(screen.shown_at)
        for _ in range(jobs):
            await asyncio.sleep(random.uniform(0, tick))  # a random phase of the tick
            body = {"entrypoint": entrypoint}
            answer = await asyncio.to_thread(ray.post, "/api/jobs/", json=body)
            job_id = answer.json()["submission_id"]
            watcher.watch(job_id, "PENDING", time.monotonic())  # Ray's answer: it exists
            deadline = time.monotonic() + 120
            while not (TERMINAL & set(screen.first_shown.get(job_id, {}))):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the view never showed job {job_id} ended")
                await asyncio.sleep(0.01)
        # Whole ticks only: from one shown poll to the last.
        counted_to = len(screen.shown_at) - 1
        start, end = screen.shown_at[counted_from], screen.shown_at[counted_to]
        requests = [t for t in screen.work.requests if start < t <= end]
        ticks = screen.shown_at[counted_from : counted_to + 1]
        per_tick = [sum(1 for t in requests if a < t <= b) for a, b in itertools.pairwise(ticks)]
        intervals = [b - a for a, b in itertools.pairwise(ticks)]
        first_shown = {k: dict(v) for k, v in screen.first_shown.items()}
        polls_started = list(screen.work.requests)
    watcher.close()
    ray.close()
    return watcher.reported, first_shown, polls_started, per_tick, intervals


@dataclass(frozen=True)
class Delay:
    status: str
    ticks: float  # (shown - Ray reported) / the poll interval
    polls: int  # the view's polls started after Ray reported, up to the one that showed it


def delays_of(
    reported: dict[str, dict[str, float]],
    shown: dict[str, dict[str, float]],
    polls_started: list[float],
    tick: float,
) -> tuple[list[Delay], list[tuple[str, float]]]:
    """Per (job, status) that both saw: its Delay; and the statuses the view never showed,
    with how long Ray held each (a status shorter than a tick may pass between two polls)."""
    delays: list[Delay] = []
    skipped: list[tuple[str, float]] = []
    for job_id, statuses in reported.items():
        ordered = sorted(statuses.items(), key=lambda item: item[1])
        for index, (status, at) in enumerate(ordered):
            seen = shown.get(job_id, {}).get(status)
            if seen is not None:
                polls = sum(1 for t in polls_started if at < t <= seen)
                delays.append(Delay(status, (seen - at) / tick, polls))
            elif index + 1 < len(ordered):
                skipped.append((status, ordered[index + 1][1] - at))
    return delays, skipped


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help=f"submit rounds (>= {MIN_ROUNDS})")
    parser.add_argument("--jobs", type=int, default=8, help="jobs watched in the view")
    parser.add_argument("--tick", type=float, default=1.0, help="the view's poll interval, s")
    parser.add_argument("--job-s", type=float, default=2.5, help="each watched job's sleep, s")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 3 jobs")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    rounds = 2 if args.quick else max(args.rounds, MIN_ROUNDS)
    jobs = 3 if args.quick else args.jobs
    load_before = load_average()
    with short_tmpdir("p8-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            started = time.monotonic()
            asyncio.run(bring_up(handle))
            print(f"cluster up in {time.monotonic() - started:.1f} s", file=sys.stderr)
            try:
                raycai_times, ray_times = submit_rounds(handle, rounds)
                reported, shown, polls_started, per_tick, intervals = asyncio.run(
                    view_run(handle, args.tick, jobs, args.job_s)
                )
            finally:
                asyncio.run(bring_down(handle))
    delays, skipped = delays_of(reported, shown, polls_started, args.tick)
    ticks = [d.ticks for d in delays]
    polls = [d.polls for d in delays]
    held_long = [(s, d) for s, d in skipped if d > args.tick]
    ratios = [o / t for o, t in zip(raycai_times, ray_times, strict=True)]

    report = Report("P8 Ray Jobs: raycai job submit vs ray job submit; the jobs view")
    report.notes.append(
        f"{rounds} alternating submit rounds (after one warm-up each); medians; "
        f"{load_before} at the start; a 1-CPU head, no worker"
    )
    report.notes.append(
        f"raycai job submit {spread(raycai_times, 3)} s; ray job submit --no-wait "
        f"{spread(ray_times, 3)} s; per-round ratio {spread(ratios, 3)}"
    )
    report.notes.append(
        f"jobs view: poll every {args.tick:g} s (measured tick {median(intervals):.3f} s, "
        f"{spread(intervals, 3)}); {jobs} jobs of {args.job_s:g} s, {len(delays)} status "
        f"changes shown; delay {spread(ticks, 3)} ticks; polls to show a change: "
        + ", ".join(f"{n}: {polls.count(n)}x" for n in sorted(set(polls)))
    )
    report.notes.append(
        f"statuses that came and went between two polls: {len(skipped)} "
        + ", ".join(f"{s} held {d:.2f} s" for s, d in skipped)
    )
    report.notes.append(
        f"dashboard requests of the view: {sum(per_tick)} over {len(per_tick)} whole ticks "
        f"({min(per_tick)}-{max(per_tick)} per tick)"
    )
    report.add("ray job submit --no-wait, wall time (s)", median(ray_times), unit=" s")
    report.add("raycai job submit, wall time (s)", median(raycai_times), unit=" s")
    report.add(
        "ratio raycai / ray job submit (medians)",
        median(raycai_times) / median(ray_times),
        SUBMIT_TARGET,
    )
    report.add("jobs view: Ray reports -> shown, median (ticks)", median(ticks))
    report.add("jobs view: Ray reports -> shown, max (ticks)", max(ticks))
    report.add("jobs view: polls from Ray reporting to shown (max)", max(polls), DELAY_TARGET_TICKS)
    report.add("jobs view: statuses held > 1 tick never shown", len(held_long), 0)
    report.add("jobs view: dashboard requests per tick (max)", max(per_tick), REQUESTS_TARGET)
    report.add("jobs view: dashboard requests per tick (mean)", sum(per_tick) / len(per_tick))
    report.finish()


if __name__ == "__main__":
    main()
