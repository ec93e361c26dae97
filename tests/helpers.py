"""Helpers shared by the integration tests: run the CLI, scan /proc, list apps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from raycai_core.cml.client import CMLClient
from raycai_core.cml.models import Application
from raycai_core.local import WorkspaceHandle
from tests.fixtures.workspace import RUNTIME

# `raycai up` flags for the smallest real cluster: 1 vCPU and 1 GB per node.
SMALL_NODES = ("--cpu", "1", "--memory", "1", "--head-cpu", "1", "--head-memory", "1",
               "--runtime", RUNTIME, "--timeout", "240")  # fmt: skip

# The local workspace's routes for creating and deleting an application, as its faults name
# routes.
CREATE_ROUTE = "POST /api/v2/projects/{project_id}/applications"
DELETE_ROUTE = "DELETE /api/v2/projects/{project_id}/applications/{application_id}"

RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "ray start", "dashboard.py", "log_monitor")


def cli_env(handle: WorkspaceHandle) -> dict[str, str]:
    """The environment a user gets from `eval "$(raycai local env)"` for this workspace."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CML_", "CDSW_", "RAYCAI_"))
    }
    env.update(
        CML_HOST=handle.url,
        CML_API_KEY=handle.api_key,
        CML_PROJECT_ID=handle.project_id,
        RAYCAI_PROJECT_DIR=str(handle.project_dir),
    )
    return env


def as_in_a_terminal() -> None:
    """Popen's preexec_fn for a CLI that a test interrupts: ctrl+c's SIGINT handled as in a
    terminal, even when the test runs where SIGINT is ignored (a background job of a script,
    which its children inherit and Python then leaves ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# The test being run (tests/conftest.py sets it): the tiers' guard below reads its markers.
RUNNING_TEST: Any = None
# A test with none of these markers belongs to the fast tier (`./dev test --fast`).
OUTSIDE_THE_FAST_TIER = ("integration", "ray", "slow")


def raycai_argv(*args: str) -> list[str]:
    """The command line of raycai's CLI as a process. A CLI process costs ~0.4 CPU-seconds
    (its imports): a test that runs one is marked `integration` (or `ray`), never fast."""
    test = RUNNING_TEST
    if test is not None and not any(test.get_closest_marker(m) for m in OUTSIDE_THE_FAST_TIER):
        raise AssertionError(
            f"{test.nodeid} runs raycai's CLI as a process: mark it `integration` "
            "(README, Development) so that `./dev test --fast` stays fast"
        )
    return [sys.executable, "-m", "raycai_core.cli.main", *args]


def raycai(
    handle: WorkspaceHandle, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        raycai_argv(*args),
        env=cli_env(handle),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"raycai {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def status_json(handle: WorkspaceHandle, name: str) -> dict[str, Any]:
    return json.loads(raycai(handle, "status", name, "--json").stdout)


def ray_processes() -> list[str]:
    """Live Ray processes visible here (the test's own PID namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(marker in cmdline for marker in RAY_PROCESS_MARKERS):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


async def cluster_apps(handle: WorkspaceHandle) -> list[Application]:
    """Every raycai application, read without injected faults' retries getting in the way."""
    async with CMLClient(handle.credentials()) as cml:
        return await cml.list_applications({"name": "raycai-"})


def nodes_of(apps: list[Application], cluster: str) -> list[str]:
    return sorted(
        a.environment.get("RAYCAI_NODE", "?")
        for a in apps
        if a.environment.get("RAYCAI_CLUSTER") == cluster
    )


class ProcessWatcher:
    """Collects the argv and environment of every process alive during the run.

    Keyed by pid and argv: a child caught between fork and exec still shows its parent's
    argv, then its own, and each environment must be judged with the argv it came with.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, bytes], bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching (again is fine); `seen` no longer changes."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        cmdline = (entry / "cmdline").read_bytes()
                        environ = (entry / "environ").read_bytes()
                        if (entry / "cmdline").read_bytes() != cmdline:
                            continue  # it exec'd between the reads: next round
                    except OSError:
                        continue
                    self.seen[(int(entry.name), cmdline)] = cmdline + b"\n" + environ
            self._stop.wait(0.2)

    def commands(self, marker: bytes) -> list[str]:
        """The argv (space-joined) of every process seen whose argv holds `marker`."""
        return [
            cmdline.replace(b"\0", b" ").decode(errors="replace")
            for _, cmdline in self.seen
            if marker in cmdline
        ]
