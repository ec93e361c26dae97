"""Shared pieces of the benchmarks: a private network namespace, a local workspace, and
how results are printed and judged (each bench exits non-zero when a target is missed)."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def in_private_netns() -> bool:
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return {line.split(":", 1)[0].strip() for line in lines if ":" in line} == {"lo"}


def ensure_private_netns() -> None:
    """Re-run this script inside `unshare -n -p -f --mount-proc` unless already isolated.

    Ray binds the machine's outside address otherwise, and multi-node clusters on one host
    need the 127.0.0.N addresses that only a fresh namespace gives us safely.
    """
    if in_private_netns() or os.environ.get("RAYCAI_NETNS") == "0":
        return
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        sys.exit("this benchmark starts Ray: run it as root (for unshare) or with RAYCAI_NETNS=0")
    script = " ".join(["ip link set lo up &&", *map(_quote, [sys.executable, *sys.argv])])
    completed = subprocess.run(["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", script])
    sys.exit(completed.returncode)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0.0
    return (
        f"{platform.machine()} {cpu_model()}, {cpus} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


@contextmanager
def short_tmpdir(prefix: str = "rb-") -> Iterator[Path]:
    """A short temp dir (Ray's unix socket paths must stay short), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        tempfile.tempdir = None
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Figure:
    name: str
    measured: float
    target: float | None
    unit: str = ""
    lower_is_better: bool = True

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return (
            self.measured <= self.target if self.lower_is_better else (self.measured >= self.target)
        )


@dataclass
class Report:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        measured: float,
        target: float | None = None,
        unit: str = "",
        lower_is_better: bool = True,
    ) -> Figure:
        figure = Figure(name, measured, target, unit, lower_is_better)
        self.figures.append(figure)
        return figure

    def finish(self) -> None:
        print(f"\n== {self.title} ==  ({machine()}; {load_average()} at the end)")
        for note in self.notes:
            print(f"   {note}")
        for f in self.figures:
            target = (
                ""
                if f.target is None
                else (f"  target {'<=' if f.lower_is_better else '>='} {f.target:g}{f.unit}")
            )
            verdict = "" if f.target is None else ("  PASS" if f.ok else "  MISS")
            print(f"   {f.name:<58} {f.measured:10.3f}{f.unit}{target}{verdict}")
        missed = [f.name for f in self.figures if not f.ok]
        if missed:
            print(f"   targets missed: {', '.join(missed)}")
            sys.exit(1)


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 2) -> str:
    """The run-to-run range of a figure, e.g. "7.81-8.12 (5 runs)"."""
    return f"{min(values):.{digits}f}-{max(values):.{digits}f} ({len(values)} runs)"
