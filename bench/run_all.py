"""Run every benchmark (each prints its figures and exits non-zero on a missed target).

Usage: python bench/run_all.py [--quick] [name ...]   e.g. `./dev bench --quick p1 p4`
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "p1": "p1_bringup.py",
    "p2": "p2_parallel_bringup.py",
    "p3": "p3_poll_requests.py",
    "p4": "p4_startup.py",
    "p5": "p5_table_refresh.py",
    "p6p7": "bench_logs.py",
    "p8": "p8_jobs.py",
    "p9": "p9_autoscale.py",
    "p10": "p10_many_clusters.py",
    "p11": "p11_tui_cpu.py",
    "p12": "p12_idle_requests.py",
    "p13": "p13_head_proxy.py",
    "r12": "r12_recovery.py",
    "r20": "r20_suspend.py",
    "r21": "r21_rolling.py",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHES)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    for name in args.names or list(BENCHES):
        argv = [sys.executable, str(HERE / BENCHES[name])] + (["--quick"] if args.quick else [])
        print(f"\n### {name}: {' '.join(argv[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(argv).returncode
        print(f"### {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks that missed a target or failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
