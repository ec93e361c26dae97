"""ctrl+c (SIGINT) ends a following command at once, even while one of its threads is stuck.

The stuck step is real: the cluster's `cluster.json` is a FIFO that the test holds open for
writing and never writes, so the command's read of it (off the event loop, in a thread, as
for a hung network mount) blocks until the test lets go. The signal is sent only once the
command is provably inside that read.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceHandle
from tests.helpers import as_in_a_terminal, cli_env, raycai_argv

pytestmark = pytest.mark.integration

EXIT_INTERRUPTED = 130
PROMPTLY = 20  # seconds; a command that waits for its stuck thread never ends before release


def stuck_cluster_file(project_dir: Path, name: str = "demo") -> Path:
    paths = ClusterPaths(project_dir, name)
    paths.root.mkdir(parents=True)
    os.mkfifo(paths.cluster_json)
    return paths.cluster_json


@pytest.fixture
def hold() -> Iterator[list[int]]:
    """Write ends of FIFOs held open by the test, closed at the end (which frees a reader)."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def wait_until_read(fifo: Path, process: subprocess.Popen[str], hold: list[int]) -> None:
    """Return once `process` has the FIFO open for reading and is blocked reading it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            # ENXIO until a reader opens it; from then on the reader waits for bytes that
            # never come, as long as this write end stays open.
            hold.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        time.sleep(0.02)
    raise AssertionError(f"the command never read {fifo}")


def interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=PROMPTLY)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"still running {PROMPTLY} s after SIGINT:\n{out}\n{err}") from None


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        raycai_argv(*args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )


def test_heal_watch_ends_at_once_while_reading_a_stuck_file(tmp_path: Path, hold: list[int]):
    fifo = stuck_cluster_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CML_", "CDSW_", "RAYCAI_"))}
    # Never contacted: the watch reads the project's files before it asks the workspace.
    env |= {
        "CML_HOST": "http://127.0.0.1:9",
        "CML_API_KEY": "unused",
        "CML_PROJECT_ID": "p-1",
        "RAYCAI_PROJECT_DIR": str(tmp_path),
    }
    process = start(env, "heal", "demo", "--watch")
    wait_until_read(fifo, process, hold)
    _, stderr = interrupt(process)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "demo: stopped watching" in stderr


def test_ray_log_follow_ends_at_once_while_reading_a_stuck_file(
    local_workspace: WorkspaceHandle, hold: list[int]
):
    fifo = stuck_cluster_file(local_workspace.project_dir)
    process = start(
        cli_env(local_workspace), "logs", "demo", "head", "--ray", "raylet.out", "--follow"
    )
    wait_until_read(fifo, process, hold)
    _, stderr = interrupt(process)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
