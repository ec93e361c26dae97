"""P4: start-up. `raycai --help` <= 0.3 s, and `raycai-tui` start to first frame <= 0.6 s.

The TUI runs on a real pseudo-terminal; its first frame is the moment the terminal has
received the header and footer the app draws. A bare `python -c pass` and a bare Textual app
are measured in the same run as baselines.

Usage: python bench/p4_startup.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Report, median

HELP_TARGET = 0.3
FRAME_TARGET = 0.6
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")
BIN = Path(sys.executable).parent
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


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def first_frame(
    argv: list[str], markers: tuple[bytes, ...], env: dict[str, str], timeout: float = 20.0
) -> float:
    """Seconds from spawn until every marker has been written to the terminal."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    try:
        while True:
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                raise TimeoutError(f"no first frame within {timeout} s: {seen[-400:]!r}")
            ready, _, _ = select.select([master], [], [], 0.005)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                seen += ANSI.sub(b"", chunk)
                if all(marker in seen for marker in markers):
                    return time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    for name in ("CML_HOST", "CML_API_KEY", "CML_PROJECT_ID", "CDSW_PROJECT_ID", "CDSW_DOMAIN"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="p4-") as data:
        # Its own local-workspace directory: the TUI starts one after its first frame.
        env["RAYCAI_LOCAL_DIR"] = data
        wall([sys.executable, "-c", "import textual.app, raycai_core"])  # warm the file cache
        python = [wall([sys.executable, "-c", "pass"]) for _ in range(runs)]
        helps = [wall([str(BIN / "raycai"), "--help"]) for _ in range(runs)]
        bare = [
            first_frame([sys.executable, "-c", BARE_TEXTUAL], (b"raycai", b"^p"), env)
            for _ in range(runs)
        ]
        tui = [
            first_frame([str(BIN / "raycai-tui"), "--local"], (b"raycai", b"^p"), env)
            for _ in range(runs)
        ]
        subprocess.run(
            [str(BIN / "raycai"), "local", "stop", "--data-dir", data], capture_output=True, env=env
        )
    report = Report("P4 start-up")
    report.notes.append(f"medians of {runs} runs; first frame on a 140x40 pseudo-terminal")
    report.add("python -c pass (baseline, s)", median(python), unit=" s")
    report.add("raycai --help (s)", median(helps), HELP_TARGET, unit=" s")
    report.add("raycai --help / python -c pass", median(helps) / median(python), unit="x")
    report.add("bare Textual app, first frame (baseline, s)", median(bare), unit=" s")
    report.add("raycai-tui, first frame (s)", median(tui), FRAME_TARGET, unit=" s")
    report.add("raycai-tui / bare Textual app", median(tui) / median(bare), unit="x")
    report.finish()


if __name__ == "__main__":
    main()
