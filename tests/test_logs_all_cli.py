"""`raycai logs NAME --all [--follow]` on launcher logs written by the test (no Ray, no
workspace: the logs command reads only the project directory)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import as_in_a_terminal, raycai_argv

pytestmark = pytest.mark.integration


def stamp(second: int) -> str:
    return f"2025-01-01T10:00:{second:02d}.000Z"


def cli_env(project_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    # Credentials are needed to name a target, but the logs command never uses them.
    env |= {
        "CML_HOST": "https://cml.invalid",
        "CML_API_KEY": "unused",
        "CML_PROJECT_ID": "p-1",
        "RAYCAI_PROJECT_DIR": str(project_dir),
    }
    return env


def logs_cli(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        raycai_argv("logs", *args),
        env=cli_env(project_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    logs = tmp_path / ".raycai" / "clusters" / "demo" / "logs"
    write(logs / "head.log", [f"{stamp(1)} [launcher] head up", f"{stamp(4)} [ray] head 4"])
    write(
        logs / "worker-1.log",
        [f"{stamp(2)} [launcher] worker-1 waits", "  an untimed continuation", f"{stamp(5)} w1"],
    )
    write(logs / "worker-2.log", [f"{stamp(3)} [launcher] worker-2 joined"])
    return logs


def test_all_nodes_interleaved_by_time_with_node_prefixes(tmp_path: Path, logs_dir: Path):
    result = logs_cli(tmp_path, "demo", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"head     | {stamp(1)} [launcher] head up",
        f"worker-1 | {stamp(2)} [launcher] worker-1 waits",
        "worker-1 |   an untimed continuation",
        f"worker-2 | {stamp(3)} [launcher] worker-2 joined",
        f"head     | {stamp(4)} [ray] head 4",
        f"worker-1 | {stamp(5)} w1",
    ]
    assert "\x1b[" not in result.stdout  # no colors when not on a terminal
    last_two = logs_cli(tmp_path, "demo", "--all", "-n", "2")
    assert last_two.stdout.splitlines() == [
        f"head     | {stamp(4)} [ray] head 4",
        f"worker-1 | {stamp(5)} w1",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "worker-1", "--all"], "give a NODE (worker-1) or --all, not both"),
        (["nothere", "--all"], "no launcher logs for nothere"),
        (["demo", "--all", "-n", "-1"], "-1 is not in the range x>=0"),
    ],
)
def test_bad_combinations_are_refused(
    tmp_path: Path, logs_dir: Path, args: list[str], expected: str
):
    result = logs_cli(tmp_path, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr and result.stdout == ""


def test_a_single_node_still_defaults_to_the_head(tmp_path: Path, logs_dir: Path):
    result = logs_cli(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{stamp(1)} [launcher] head up",
        f"{stamp(4)} [ray] head 4",
    ]


def ended(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The stderr of `process` once it has exited; if it has not within `timeout`, it is
    killed and the error says what state it was in (its signals ignored or blocked, where
    the kernel had it waiting)."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc = Path(f"/proc/{process.pid}")
        try:
            status = [
                line
                for line in (proc / "status").read_text().splitlines()
                if line.startswith(("State", "SigBlk", "SigIgn", "SigCgt", "Threads"))
            ]
            state = f"{status}, wchan {(proc / 'wchan').read_text()!r}"
        except OSError as exc:
            state = f"unknown ({exc})"
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"still running {timeout} s after SIGINT: {state}\n{stderr}") from None


def test_follow_shows_new_lines_of_every_node_and_new_nodes(tmp_path: Path, logs_dir: Path):
    process = subprocess.Popen(
        raycai_argv("logs", "demo", "--all", "-n", "1", "--follow"),
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )
    seen: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None

    def read() -> None:
        for line in iter(process.stdout.readline, ""):
            seen.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str:
        try:
            return seen.get(timeout=30)
        except queue.Empty:
            raise AssertionError(f"no line in 30 s (exit status {process.poll()})") from None

    try:
        assert next_line() == f"worker-1 | {stamp(5)} w1"
        write(logs_dir / "worker-2.log", [f"{stamp(6)} worker-2 busy"])
        assert next_line() == f"worker-2 | {stamp(6)} worker-2 busy"
        write(logs_dir / "worker-3.log", [f"{stamp(7)} [launcher] worker-3 starting"])
        assert next_line() == f"worker-3 | {stamp(7)} [launcher] worker-3 starting"
        write(logs_dir / "head.log", [f"{stamp(8)} head 8"])
        assert next_line() == f"head     | {stamp(8)} head 8"
    finally:
        process.send_signal(signal.SIGINT)  # what ctrl+c sends: a quiet, successful exit
        stderr = ended(process)
    assert process.returncode == 0, stderr
    assert "raycai: worker-3.log appeared; following it" in stderr


def test_all_with_ray_merges_each_nodes_copy_of_that_ray_log(tmp_path: Path, logs_dir: Path):
    """The copies the launchers keep (logs/<node>/ray/<session>/), stamped as Ray stamps."""
    old = logs_dir / "worker-1" / "ray" / "session_2025-01-01_09-00-00_000000_1"
    write(old / "raylet.out", ["[2025-01-01 09:00:00,000 I 1 1] an older session"])
    new = logs_dir / "worker-1" / "ray" / "session_2025-01-01_09-59-00_000000_2"
    write(new / "raylet.out", ["[2025-01-01 10:00:02,500 I 7 7] raylet of worker-1"])
    write(new / "worker-ab-01000000-9.out", ["not asked for"])
    result = logs_cli(tmp_path, "demo", "--all", "--ray", "raylet.out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"head                | {stamp(1)} [launcher] head up",
        f"worker-1            | {stamp(2)} [launcher] worker-1 waits",
        "worker-1            |   an untimed continuation",
        "worker-1/raylet.out | [2025-01-01 10:00:02,500 I 7 7] raylet of worker-1",
        f"worker-2            | {stamp(3)} [launcher] worker-2 joined",
        f"head                | {stamp(4)} [ray] head 4",
        f"worker-1            | {stamp(5)} w1",
    ]
