"""P11: the CPU raycai-tui uses while it watches, as a share of one core: <= 1 % on the
clusters list (2 clusters) and <= 1 % on the cluster screen of a 3-node cluster.

raycai-tui runs as a real process on a pseudo-terminal (140x45; the bench reads and discards
what it draws, as a terminal would): Textual's Linux driver then writes every frame, which its
headless mode skips, and nothing of the bench shares its interpreter. It talks to a local
workspace served from the bench's own process (the TUI is pointed at it with CML_HOST /
CML_API_KEY / CML_PROJECT_ID and RAYCAI_PROJECT_DIR, as a user's shell would), with its
defaults: a poll every 2 s, healing on. Two clusters on real Ray (`--stand-in`: the stand-in
of the fast tests, tests/fixtures/stand_in_ray.py): `p11a`, a head and 2 workers, and
`p11b`, a head alone. Once a screen shows its data (and a few seconds more), the figure is
the process's utime + stime (/proc/<pid>/stat, every thread) over `--seconds` of wall time.
A bare Textual app (a header and a footer) runs on its own pseudo-terminal during both
windows: the baseline, measured over the same time.

`--compare TREE`: a second raycai-tui runs the code in TREE (its raycai, raycai_core and
raycai_tui first on PYTHONPATH, e.g. from `git archive <commit> raycai raycai_core raycai_tui |
tar -x -C TREE`) on a pseudo-terminal of its own, measured over the same windows: a before and
after under the same load.

Usage: python bench/p11_tui_cpu.py [--seconds 60] [--settle 5] [--stand-in] [--profile DIR]
       [--quick] [--compare TREE]
       (--quick: 15 s windows; --profile: py-spy flame graphs of each window)
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from _common import REPO, Report, ensure_private_netns, load_average, short_tmpdir

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle

TARGET_PERCENT = 1.0
SIZE = (45, 140)  # rows, columns
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b."
)
CLUSTERS = {"p11a": 2, "p11b": 0}  # name: workers (p11a sorts first: enter opens it)
WATCHED = "p11a"
GROUPS = ["data:cpu=1,memory=1,count=1", "gpu:cpu=1,memory=1,gpu=1,count=1"]
GROUPED = False  # --groups
BARE_TEXTUAL = """
from textual.app import App
from textual.widgets import Footer, Header
class Bare(App):
    TITLE = "raycai"
    def compose(self):
        yield Header()
        yield Footer()
Bare().run()
"""
STAND_IN_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then echo 2.60.0; exit 0; fi
exec {python} "$@"
"""


# -- a process on a pseudo-terminal ------------------------------------------------------------


class Terminal:
    """A process on its own pseudo-terminal; a thread reads (and keeps the tail of) its output,
    without escape sequences, so that the bench can wait for text to be drawn."""

    KEEP = 1 << 18

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        rows, columns = SIZE
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self._master = master
        self._seen = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        while not self._closed:
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._seen += ANSI.sub(b"", chunk)
                del self._seen[: -self.KEEP]

    def forget(self) -> None:
        """Drop what was drawn so far (wait for what the next screen draws)."""
        with self._lock:
            self._seen.clear()

    def wait_for(self, markers: list[str], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = [marker.encode() for marker in markers]
        while time.monotonic() < deadline:
            with self._lock:
                if all(marker in self._seen for marker in wanted):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        with self._lock:
            tail = bytes(self._seen[-1500:]).decode(errors="replace")
        raise SystemExit(f"{what}: not drawn within {timeout:g} s ({markers}); last:\n{tail}")

    def press(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def close(self) -> None:
        self._closed = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=2)
        os.close(self._master)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat; of one of its
    threads with `thread` (the main thread's id is the pid)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    text = Path(path).read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Window:
    cpu_s: float
    wall_s: float
    main_s: float = 0.0  # of which the main thread (the event loop: Textual, HTTP, parsing)

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s


def measure(pids: list[int], seconds: float, profile: Path | None, label: str) -> list[Window]:
    """CPU of each process over the same `seconds` of wall time."""
    recorder = None
    if profile is not None:  # py-spy samples from outside (its CPU is not the TUI's)
        profile.mkdir(parents=True, exist_ok=True)
        recorder = subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "--pid",
                str(pids[0]),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "speedscope",
                "--output",
                str(profile / f"{label}.speedscope.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    started = time.monotonic()
    before = [(cpu_seconds(pid), cpu_seconds(pid, pid)) for pid in pids]
    time.sleep(seconds)
    after = [(cpu_seconds(pid), cpu_seconds(pid, pid)) for pid in pids]
    wall = time.monotonic() - started
    if recorder is not None:
        recorder.wait()
    return [Window(a[0] - b[0], wall, a[1] - b[1]) for a, b in zip(after, before, strict=True)]


# -- the clusters --------------------------------------------------------------------------------


def install_stand_in(handle: WorkspaceHandle) -> None:
    """The fast tests' stand-in Ray as the project's Ray (the launchers look in .venv first)."""
    bin_dir = Path(handle.project_dir) / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    stand_in = REPO / "tests" / "fixtures" / "stand_in_ray.py"
    for name, text in (
        ("python", STAND_IN_PYTHON.format(python=sys.executable)),
        ("ray", f"#!{sys.executable}\n" + stand_in.read_text()),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)


async def bring_up(handle: WorkspaceHandle) -> None:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    runtime = DEFAULT_RUNTIMES[0]["image_identifier"]
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            for name, workers in CLUSTERS.items():
                # --groups: the watched cluster's workers in two groups (one of each).
                groups = GROUPS if (name == WATCHED and GROUPED) else None
                spec = spec_from_flags(
                    name=name,
                    runtime=runtime,
                    workers=None if groups else workers,
                    cpu=None if groups else 1,
                    memory=None if groups else 1,
                    head_cpu=1,
                    head_memory=1,
                    groups=groups,
                )
                view = await ops.up(spec, timeout=300)
                if not view.ready:
                    raise SystemExit(f"{name} did not become ready")
        finally:
            await ops.observer.aclose()


async def bring_down(handle: WorkspaceHandle) -> None:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient

    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            for name in CLUSTERS:
                await ops.down(name)
        finally:
            await ops.observer.aclose()


def tui_env(handle: WorkspaceHandle) -> dict[str, str]:
    """A user's terminal on this workspace (no other CML, Ray or raycai variable)."""
    dropped = ("CML_", "CDSW_", "RAYCAI_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        TERM="xterm-256color",
        COLORTERM="truecolor",
        CML_HOST=handle.url,
        CML_API_KEY=handle.api_key,
        CML_PROJECT_ID=handle.project_id,
        RAYCAI_PROJECT_DIR=str(handle.project_dir),
    )
    return env


# -- the run ---------------------------------------------------------------------------------------


def describe(window: Window) -> str:
    main = 100.0 * window.main_s / window.wall_s
    return f"{window.percent:.2f} % (main thread {main:.2f} %)"


@dataclass
class Result:
    bare: list[Window]
    clusters: Window
    cluster: Window
    compared: list[Window]  # --compare: the other tree's list, then cluster screen


def watch(
    handle: WorkspaceHandle,
    seconds: float,
    settle: float,
    profile: Path | None,
    compare: Path | None = None,
) -> Result:
    env = tui_env(handle)
    bare = Terminal([sys.executable, "-c", BARE_TEXTUAL], env)
    tuis = [Terminal([str(BIN / "raycai-tui")], env)]
    if compare is not None:
        tuis.append(Terminal([str(BIN / "raycai-tui")], {**env, "PYTHONPATH": str(compare)}))
    try:
        bare.wait_for(["raycai", "^p"], "the bare Textual app")
        for tui in tuis:
            tui.wait_for([*CLUSTERS, "CML: updated"], "the clusters list")
        time.sleep(settle)
        pids = [tui.pid for tui in tuis]
        tui_list, bare_list, *old_list = measure(
            [pids[0], bare.pid, *pids[1:]], seconds, profile, "clusters-list"
        )
        print(f"clusters list: {describe(tui_list)} (bare app {bare_list.percent:.2f} %)")
        for tui in tuis:
            tui.forget()
            tui.press(b"\r")
        workers = CLUSTERS[WATCHED]
        for tui in tuis:
            wanted = "workers in 2 groups" if GROUPED else f"workers: {workers} wanted"
            tui.wait_for(
                [WATCHED, wanted, f"{workers + 1} alive", "Ray: updated"],
                f"the cluster screen of {WATCHED}",
            )
        time.sleep(settle)
        tui_one, bare_one, *old_one = measure(
            [pids[0], bare.pid, *pids[1:]], seconds, profile, "cluster-screen"
        )
        print(f"cluster screen: {describe(tui_one)} (bare app {bare_one.percent:.2f} %)")
        for name, window in (("clusters list", old_list), ("cluster screen", old_one)):
            if window:
                print(f"{name}, {compare}: {describe(window[0])}")
    finally:
        for tui in tuis:
            tui.close()
        bare.close()
    return Result([bare_list, bare_one], tui_list, tui_one, [*old_list, *old_one])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="each screen's window")
    parser.add_argument("--settle", type=float, default=5.0, help="wait after a screen shows")
    parser.add_argument("--stand-in", action="store_true", help="the stand-in Ray, not Ray")
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs here")
    parser.add_argument("--quick", action="store_true", help="15 s windows")
    parser.add_argument("--compare", type=Path, help="also measure the code in this tree")
    parser.add_argument(
        "--groups", action="store_true", help="the watched cluster's workers in two groups"
    )
    args = parser.parse_args()
    global GROUPED
    GROUPED = args.groups
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    seconds = 15.0 if args.quick else args.seconds
    load_before = load_average()
    with short_tmpdir("p11-") as tmp:
        config = WorkspaceConfig(stop_grace_s=20.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            if args.stand_in:
                install_stand_in(handle)
            started = time.monotonic()
            asyncio.run(bring_up(handle))
            print(f"clusters up in {time.monotonic() - started:.1f} s: {dict(CLUSTERS)} workers")
            try:
                result = watch(handle, seconds, args.settle, args.profile, args.compare)
            finally:
                asyncio.run(bring_down(handle))
    bare_cpu = sum(w.cpu_s for w in result.bare)
    bare = Window(bare_cpu, sum(w.wall_s for w in result.bare))
    ray = "the stand-in Ray (tests/fixtures/stand_in_ray.py)" if args.stand_in else "real Ray"
    report = Report("P11 raycai-tui CPU while watching, % of one core (utime + stime / wall)")
    report.notes.append(
        f"{seconds:g} s per screen after {args.settle:g} s settled; {ray}; poll every 2 s; "
        f"140x45 pseudo-terminal; load before: {load_before}"
    )
    report.notes.append(
        f"CPU seconds: list {result.clusters.cpu_s:.2f} (main thread {result.clusters.main_s:.2f}),"
        f" cluster screen {result.cluster.cpu_s:.2f} (main thread {result.cluster.main_s:.2f}), "
        f"bare app {bare.cpu_s:.2f} over {bare.wall_s:.0f} s (clock tick {1000 / CLK_TCK:g} ms)"
    )
    report.add("bare Textual app, idle (baseline, %)", bare.percent, unit=" %")
    report.add("clusters list, 2 clusters (%)", result.clusters.percent, TARGET_PERCENT, " %")
    report.add(
        f"cluster screen, {CLUSTERS[WATCHED] + 1} nodes (%)",
        result.cluster.percent,
        TARGET_PERCENT,
        " %",
    )
    if result.compared:
        old_list, old_one = result.compared
        report.add(f"clusters list, {args.compare} (%)", old_list.percent, unit=" %")
        report.add(f"cluster screen, {args.compare} (%)", old_one.percent, unit=" %")
    floor = max(bare.percent, 0.01)  # an idle app may use no tick at all
    report.add("clusters list / bare app", result.clusters.percent / floor, unit="x")
    report.add("cluster screen / bare app", result.cluster.percent / floor, unit="x")
    report.finish()


if __name__ == "__main__":
    main()
