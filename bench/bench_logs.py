"""P6/P7: the logs screen against a chatty log, headless (App.run_test + Pilot).

P6  opening the tail of a 1 GB log file <= 50 ms (read from the end; page cache dropped
    first), and, while a writer process appends 20,000 Ray-like lines/s to the followed
    file, key presses (wrap, follow) answered within 100 ms (p95) from pilot.press to the
    next screen refresh that shows the change; the buffer stays within its bound.
P7  resident memory of this process (the TUI) after following the busy log <= 120 MB and
    flat: the default run follows for 90 s and reports the trend, `--minutes 10` is the full
    run. Baselines in the same run: an idle app with the same screen on a quiet file (RSS,
    key latency), and Textual's own Log widget fed the same batches (cost per batch).

Usage: python bench/bench_logs.py [--quick] [--minutes M] [--rate LINES_PER_S] [--presses N]
       (--quick: about 40 s, a 20 s flood; for CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Report
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Log

from raycai_core.logtail import read_tail
from raycai_tui.screens.logs import LogsScreen
from raycai_tui.widgets.log_view import LogView

MAX_LINES = 20_000
TAIL_TARGET_MS = 50.0
KEY_TARGET_MS = 100.0
RSS_TARGET_MB = 120.0
FLAT_TARGET_MB = 8.0  # growth allowed between the first and the last third of the flood


# -- Ray-like lines -----------------------------------------------------------------------------

_MESSAGES = [
    "(raylet) node_manager.cc:{n}: Lease granted to worker {h} for task train_step, {k} pending",
    "(raylet) worker_pool.cc:{n}: Started worker process with pid {k}, the token is {h}",
    "(gcs_server) gcs_actor_manager.cc:{n}: Actor created, actor id = {h}, job id = 01000000",
    "(raylet) local_object_manager.cc:{n}: Spilled {k} MiB, {k} objects, 312 MiB/s",
    "(dashboard) head.py:{n}: GET /api/v0/nodes 200 in {k} ms",
    "(raylet) scheduling_queue.cc:{n}: Task {h} is infeasible: requires {{CPU: 64.0}} on this node",
    "(pid={k}) train.py:{n}: epoch 3 step {k} loss=0.{k} lr=0.0003 throughput=1834.2 samples/s",
    "(raylet) core_worker.cc:{n}: Failed to report task events: RPC timeout after {k} ms, retry",
]
_LEVELS = "IIIIIIWE"


def ray_like_lines(start: int, count: int, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    out = []
    for seq in range(start, start + count):
        template = _MESSAGES[seq % len(_MESSAGES)]
        text = template.format(n=1000 + seq % 900, h=f"{seq * 2654435761 % 2**64:016x}", k=seq)
        out.append(f"[{stamp},{seq % 1000:03d} {_LEVELS[seq % 8]} 4821 4867] t={now:.3f} {text}\n")
    return "".join(out)


def writer_main(path: str, rate: int) -> None:
    """Append `rate` lines/s to `path` in 10 ms steps until killed; report what was written."""
    written = 0
    start = time.monotonic()
    try:
        with open(path, "a", buffering=1 << 20) as f:
            while True:
                due = int((time.monotonic() - start) * rate) - written
                if due > 0:
                    f.write(ray_like_lines(written, due, time.time()))
                    f.flush()
                    written += due
                time.sleep(0.01)
    except KeyboardInterrupt:
        pass
    finally:
        elapsed = time.monotonic() - start
        print(f"{written} {elapsed:.3f}", flush=True)


class Writer:
    def __init__(self, path: Path, rate: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--writer", str(path), "--rate", str(rate)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> float:
        """Stop the writer; the rate it achieved (lines/s)."""
        import signal

        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=10)
        written, elapsed = out.split()
        return int(written) / float(elapsed)


# -- helpers ------------------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):6.1f}  p95 {percentile(values, 0.95):6.1f}  "
        f"max {max(values):6.1f} ms  (n={len(values)})"
    )


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class LogsApp(App[None]):
    def __init__(self, screen: LogsScreen) -> None:
        super().__init__()
        self.logs = screen

    def on_mount(self) -> None:
        self.push_screen(self.logs)


def logs_screen(path: Path) -> LogsScreen:
    return LogsScreen(
        cluster="bench",
        node="head",
        launcher_log=path,
        ray_client=None,
        ray_node_id=None,
        max_lines=MAX_LINES,
    )


async def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the logs screen did not get there in time")
        await asyncio.sleep(0.001)


class PressProbe:
    """Times a key press from pilot.press to the refresh after the view's reactive changed."""

    def __init__(self, app: LogsApp) -> None:
        self.app = app
        self.future: asyncio.Future[float] | None = None
        view = app.logs.view
        for attribute in ("wrap", "follow"):
            app.logs.watch(view, attribute, self._changed, init=False)

    def _changed(self, *_: object) -> None:
        future = self.future
        if future is not None and not future.done():
            self.app.call_after_refresh(
                lambda: future.done() or future.set_result(time.perf_counter())
            )

    async def press(self, pilot: Pilot, key: str) -> float:
        self.future = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        # pilot.press sends the key, then waits for the app to go idle: a busy app never
        # does, so the wait is cut short once the effect has been shown.
        pressing = asyncio.create_task(pilot.press(key))
        try:
            shown = await asyncio.wait_for(self.future, 10)
        finally:
            pressing.cancel()
            await asyncio.gather(pressing, return_exceptions=True)
        return (shown - start) * 1000


async def press_keys(probe: PressProbe, pilot: Pilot, presses: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"w": [], "f": []}
    for i in range(presses):
        key = "wf"[i % 2]
        latencies[key].append(await probe.press(pilot, key))
        await asyncio.sleep(0.05 + 0.05 * (i % 3) / 2)  # let the flood go on between presses
    if len(latencies["f"]) % 2:  # leave follow on
        await probe.press(pilot, "f")
    return latencies


# -- P6: the tail of 1 GB -----------------------------------------------------------------------


def make_big_file(path: Path, size: int) -> None:
    block = ray_like_lines(0, 30_000, time.time()).encode()
    with path.open("wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


async def bench_tail(report: Report, root: Path) -> None:
    path = root / "big.log"
    started = time.monotonic()
    make_big_file(path, 2**30)
    size = path.stat().st_size
    made = time.monotonic() - started
    try:
        drop_cache(path)
        start = time.perf_counter()
        tail = read_tail(path, 1000)
        cold = (time.perf_counter() - start) * 1000
        assert len(tail.lines) == 1000
        warm = []
        for _ in range(20):
            start = time.perf_counter()
            read_tail(path, 1000)
            warm.append((time.perf_counter() - start) * 1000)

        empty = root / "empty.log"
        empty.write_text("")
        in_view, painted, painted_empty = [], [], []
        app = LogsApp(logs_screen(path))
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.logs.view.line_count >= 1000)  # Textual warmed up
            for _ in range(5):
                for target, times in ((path, painted), (empty, painted_empty)):
                    app.pop_screen()
                    await pilot.pause()
                    drop_cache(target)
                    screen = logs_screen(target)
                    view = screen.view
                    start = time.perf_counter()
                    app.push_screen(screen)
                    if target == path:
                        await until(lambda v=view: v.line_count and v.lines()[-1] == tail.lines[-1])
                        in_view.append((time.perf_counter() - start) * 1000)
                    shown = asyncio.get_running_loop().create_future()
                    app.call_after_refresh(lambda f=shown: f.set_result(time.perf_counter()))
                    times.append((await shown - start) * 1000)
                    if target == path:
                        assert view.visible_lines()[-1] == tail.lines[-1]
        report.notes += [
            f"1 GB file: {size / 2**30:.2f} GiB written in {made:.1f} s; tail of 1000 lines: "
            f"cold {cold:.1f} ms, warm median {statistics.median(warm):.2f} ms",
            f"logs screen pushed -> the 1 GB file's tail in the view (cold cache, 5 runs): "
            f"{', '.join(f'{t:.0f}' for t in in_view)} ms",
            f"pushed -> first paint: 1 GB file {statistics.median(painted):.0f} ms, empty file "
            f"{statistics.median(painted_empty):.0f} ms (medians; the paint is Textual's screen "
            "mount, the same without any log)",
        ]
        report.add("P6 tail of a 1 GB file, 1000 lines, cold cache", cold, TAIL_TARGET_MS, " ms")
        report.add("P6 tail of a 1 GB file, warm, max of 20", max(warm), TAIL_TARGET_MS, " ms")
        report.add(
            "P6 screen pushed -> 1 GB file's tail in the view, median",
            statistics.median(in_view),
            TAIL_TARGET_MS,
            " ms",
        )
        report.add(
            "P6 first paint, 1 GB file / empty file (medians)",
            statistics.median(painted) / statistics.median(painted_empty),
            None,
            "x",
        )
    finally:
        path.unlink(missing_ok=True)


# -- Log widget vs LogView: cost of one batch into a full buffer --------------------------------


class WidgetApp(App[None]):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self):
        yield self.widget


async def bench_widgets(report: Report, batches: int) -> None:
    batch = ray_like_lines(0, 1600, time.time()).splitlines()  # 80 ms of 20k lines/s
    costs = {}
    for name, widget in (
        ("LogView (Line API, ring, index)", LogView(max_lines=MAX_LINES)),
        ("textual Log(max_lines)", Log(max_lines=MAX_LINES, auto_scroll=True)),
    ):
        app = WidgetApp(widget)
        async with app.run_test(size=(160, 48)) as pilot:
            feed = widget.append if isinstance(widget, LogView) else widget.write_lines
            for _ in range(MAX_LINES // len(batch) + 1):
                feed(batch)
            await pilot.pause()
            times = []
            for _ in range(batches):
                start = time.perf_counter()
                feed(batch)
                for y in range(widget.size.height):  # one frame of the visible rows
                    widget.render_line(y)
                times.append((time.perf_counter() - start) * 1000)
                await pilot.pause(0)
            costs[name] = times
    for name, times in costs.items():
        report.notes.append(
            f"batch of 1600 lines into a full {MAX_LINES:,} buffer, {name}: " + summary(times)
        )
    ours = statistics.median(costs["LogView (Line API, ring, index)"])
    theirs = statistics.median(costs["textual Log(max_lines)"])
    report.add("LogView batch cost / Log widget batch cost (medians)", ours / theirs, None, "x")


# -- P6 keys under a flood and P7 memory --------------------------------------------------------


async def bench_flood(report: Report, root: Path, args: argparse.Namespace) -> None:
    path = root / "head.log"
    path.write_text(ray_like_lines(0, 1000, time.time()))
    app = LogsApp(logs_screen(path))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.logs
        view = screen.view
        await until(lambda: view.line_count >= 1000)
        probe = PressProbe(app)

        # Baseline: the same screen on a quiet file.
        quiet = await press_keys(probe, pilot, args.presses)
        await pilot.pause(1.0)
        idle_rss = rss_mb()

        writer = Writer(path, args.rate)
        duration = args.minutes * 60
        start = time.monotonic()
        samples: list[tuple[float, float]] = []
        ages: list[float] = []
        most = 0
        busy: dict[str, list[float]] = {}
        try:
            await pilot.pause(2.0)  # the buffer fills up
            busy = await press_keys(probe, pilot, args.presses)
            next_print = 0.0
            while (elapsed := time.monotonic() - start) < duration:
                most = max(most, view.line_count)
                samples.append((elapsed, rss_mb()))
                last = view.lines()[-1]
                if " t=" in last:
                    ages.append(time.time() - float(last.split(" t=", 1)[1].split()[0]))
                if elapsed >= next_print:
                    print(
                        f"   t={elapsed:5.0f}s rss={samples[-1][1]:6.1f} MB "
                        f"buffered={view.line_count:,} received={view.received_total:,} "
                        f"skipped={view.skipped_total:,} batches={screen.batches:,}",
                        flush=True,
                    )
                    next_print += max(10.0, duration / 12)
                await asyncio.sleep(0.5)
        finally:
            achieved = writer.stop()
        flood_s = time.monotonic() - start
        received, skipped, batches = view.received_total, view.skipped_total, screen.batches

    quiet_all = quiet["w"] + quiet["f"]
    busy_all = busy["w"] + busy["f"]
    report.notes += [
        f"writer: {achieved:,.0f} lines/s for {flood_s:.0f} s (target rate {args.rate:,})",
        f"view: {received / flood_s:,.0f} lines/s received, {skipped:,} skipped, "
        f"{batches / flood_s:.1f} widget updates/s, at most {most:,} lines buffered",
        f"display lag (now - time in the newest shown line): p50 "
        f"{percentile(ages, 0.5) * 1000:.0f} ms, p95 {percentile(ages, 0.95) * 1000:.0f} ms",
        f"keys, quiet file: {summary(quiet_all)}",
        f"keys, 20k lines/s: {summary(busy_all)}",
        f"   wrap toggles: {summary(busy['w'])}",
        f"   follow toggles: {summary(busy['f'])}",
    ]
    report.add(
        "P6 key press -> shown, 20k lines/s, p95", percentile(busy_all, 0.95), KEY_TARGET_MS, " ms"
    )
    report.add("P6 key press -> shown, 20k lines/s, max", max(busy_all), None, " ms")
    report.add(
        "P6 key latency p95 busy / quiet",
        percentile(busy_all, 0.95) / max(percentile(quiet_all, 0.95), 1e-3),
        None,
        "x",
    )
    report.add("P6 lines buffered at most", most, MAX_LINES)
    report.add(
        "P6 view keeps up: received / written",
        received / (achieved * flood_s),
        0.9,
        lower_is_better=False,
    )

    settled = [rss for t, rss in samples if t >= min(10.0, duration / 3)]
    third = max(1, len(settled) // 3)
    growth = statistics.mean(settled[-third:]) - statistics.mean(settled[:third])
    final = samples[-1][1]
    report.notes.append(
        f"RSS: idle app {idle_rss:.1f} MB; following {flood_s / 60:.1f} min: "
        f"{min(r for _, r in samples):.1f}..{max(r for _, r in samples):.1f} MB, "
        f"final {final:.1f} MB ({final / idle_rss:.2f}x idle)"
        + ("" if args.minutes >= 10 else "; a shorter run than 10 min: the trend is the claim")
    )
    report.add(
        f"P7 RSS after {flood_s / 60:.1f} min following 20k lines/s", final, RSS_TARGET_MB, " MB"
    )
    report.add("P7 RSS growth, first third -> last third of the run", growth, FLAT_TARGET_MB, " MB")


async def main(args: argparse.Namespace) -> None:
    report = Report("P6/P7 logs screen (bench/bench_logs.py)")
    root = Path(tempfile.mkdtemp(prefix="raycai-bench-logs-"))
    try:
        await bench_tail(report, root)
        await bench_widgets(report, 20 if args.quick else 60)
        await bench_flood(report, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.finish()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI mode: about 40 s")
    parser.add_argument("--minutes", type=float, default=None, help="flood duration (1.5)")
    parser.add_argument("--rate", type=int, default=20_000, help="lines/s appended")
    parser.add_argument("--presses", type=int, default=None, help="key presses per phase (50)")
    parser.add_argument("--writer", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minutes is None:
        args.minutes = 1 / 3 if args.quick else 1.5
    if args.presses is None:
        args.presses = 20 if args.quick else 50
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.writer:
        writer_main(arguments.writer, arguments.rate)
    else:
        asyncio.run(main(arguments))
