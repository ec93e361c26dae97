"""R20: suspend and resume (local workspace, real Ray, head + 2 workers as P1).

Suspend detection: from the cluster ready and idle (`raycai up` or `raycai resume` just
returned) to every application STOPPED, minus the configured `idle_suspend_minutes`, with no
raycai process running (the head's idle check decides). Target <= 60 s.

Resume to READY: `raycai resume NAME` (the applications restarted, the workers re-joined,
every node in Ray) against the same cluster's first `raycai up` in the same run (P1's
bring-up: head + 2 workers until all joined Ray). Target <= the bring-up + 10 %.

Usage: python bench/r20_suspend.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _common import Report, ensure_private_netns, load_average, median, short_tmpdir, spread
from p13_head_proxy import cli_env, raycai  # the CLI as a user runs it, one copy

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle

NAME = "r20"
IDLE_MINUTES = 0.25
DETECT_TARGET_S = 60.0
RESUME_RATIO_TARGET = 1.10
BIN = Path(sys.executable).parent


def statuses(handle: WorkspaceHandle) -> set[str]:
    from raycai_core.cml.client import CMLClient

    async def listed() -> set[str]:
        async with CMLClient(handle.credentials()) as cml:
            apps = await cml.list_applications({"name": "raycai-"})
        return {a.status.value for a in apps if a.environment.get("RAYCAI_CLUSTER") == NAME}

    return asyncio.run(listed())


def timed(handle: WorkspaceHandle, *args: str) -> float:
    started = time.monotonic()
    raycai(handle, *args)
    return time.monotonic() - started


def suspended_after(handle: WorkspaceHandle, idle_since: float) -> float:
    """Seconds from `idle_since` until every application is STOPPED (polled every 0.25 s)."""
    deadline = time.monotonic() + IDLE_MINUTES * 60 + 180
    while statuses(handle) != {"stopped"}:
        if time.monotonic() > deadline:
            raise SystemExit(f"not suspended after {IDLE_MINUTES} min idle + 180 s")
        time.sleep(0.25)
    return time.monotonic() - idle_since


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="suspend + resume rounds")
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import run_workspace_in_thread
    from raycai_core.local.config import DEFAULT_RUNTIMES

    rounds = 1 if args.quick else args.rounds
    report = Report("R20 suspend and resume, head + 2 workers")
    detect: list[float] = []
    resume: list[float] = []
    with short_tmpdir("r20-") as tmp, run_workspace_in_thread(tmp / "ws") as handle:
        runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
        flags = ["--workers", "2", "--cpu", "1", "--memory", "1", "--head-cpu", "1"]
        flags += ["--head-memory", "1", "--runtime", runtime]
        try:
            bringup = timed(handle, "up", NAME, *flags, "--idle-suspend-minutes", f"{IDLE_MINUTES}")
            print(f"bring-up (raycai up, until 3 nodes joined): {bringup:.2f} s; {load_average()}")
            for index in range(rounds):
                idle_since = time.monotonic()
                took = suspended_after(handle, idle_since) - IDLE_MINUTES * 60
                detect.append(took)
                took_resume = timed(handle, "resume", NAME)
                resume.append(took_resume)
                print(
                    f"round {index + 1}: suspended {took:.2f} s after the idle period, "
                    f"resumed to READY in {took_resume:.2f} s; {load_average()}"
                )
        finally:
            subprocess.run(
                [str(BIN / "raycai"), "down", NAME, "--yes"],
                env=cli_env(handle),
                capture_output=True,
            )
    report.notes.append(
        f"suspend detection {spread(detect)}; resume {spread(resume)}; bring-up "
        f"{bringup:.2f} s (`raycai up`, same run); idle_suspend_minutes = {IDLE_MINUTES}"
    )
    report.add("suspend detection: idle -> all STOPPED, minus the minutes", median(detect),
               DETECT_TARGET_S, " s")  # fmt: skip
    report.add("resume -> READY (median)", median(resume), None, " s")
    report.add("resume / bring-up (same run)", median(resume) / bringup, RESUME_RATIO_TARGET)
    report.finish()


if __name__ == "__main__":
    main()
