"""The workspace as a background process: `raycai local start|status|stop|env`.

`start` launches `python -m raycai_core.local serve --data-dir D` in its own session
(output in D/server.log). The server writes D/workspace.json (0600: it holds the API key)
once it listens and removes it when it exits. A lock file keeps two concurrent starts from
launching two servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from raycai_core.atomic import read_json

WORKSPACE_FILE = "workspace.json"
LOG_FILE = "server.log"


class DaemonError(Exception):
    """The workspace could not be started or stopped; the message says why."""


def default_data_dir() -> Path:
    override = os.environ.get("RAYCAI_LOCAL_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("raycai")) / "local"


def _is_server(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a live `raycai_core.local serve` for this data dir."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv]
    if "raycai_core.local" not in args or "serve" not in args:
        return False
    try:
        given = Path(args[args.index("--data-dir") + 1]).resolve()
    except (ValueError, IndexError):
        return False
    return given == data_dir.resolve()


def running_info(data_dir: Path) -> dict[str, Any] | None:
    """workspace.json of a server that is running now, else None."""
    info = read_json(data_dir / WORKSPACE_FILE)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info if _is_server(info["pid"], data_dir) else None


def _answers(info: dict[str, Any]) -> bool:
    try:
        response = httpx.get(
            f"{info['url']}/_local/stats",
            headers={"Authorization": f"Bearer {info['api_key']}"},
            timeout=2.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data_dir / "daemon.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(data_dir: Path, lines: int = 15) -> str:
    try:
        text = (data_dir / LOG_FILE).read_text(errors="replace")
    except OSError:
        return "(no server.log)"
    return "\n".join(text.splitlines()[-lines:])


def start(
    data_dir: Path, serve_args: list[str], timeout: float = 30.0
) -> tuple[dict[str, Any], bool]:
    """Start the server unless it runs; returns (workspace.json, started_now)."""
    data_dir = data_dir.resolve()
    with _lock(data_dir):
        info = running_info(data_dir)
        if info is not None:
            return info, False
        argv = [sys.executable, "-m", "raycai_core.local", "serve", "--data-dir", str(data_dir)]
        with open(data_dir / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [*argv, *serve_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DaemonError(
                    f"the local workspace exited at start (code {process.returncode}); "
                    f"last lines of {data_dir / LOG_FILE}:\n{_log_tail(data_dir)}"
                )
            info = read_json(data_dir / WORKSPACE_FILE)
            if isinstance(info, dict) and info.get("pid") == process.pid and _answers(info):
                return info, True
            time.sleep(0.1)
        process.terminate()
        raise DaemonError(
            f"the local workspace did not answer within {timeout:.0f} s; "
            f"see {data_dir / LOG_FILE}:\n{_log_tail(data_dir)}"
        )


def stop(data_dir: Path, timeout: float = 90.0) -> bool:
    """SIGTERM the server and wait for it (it stops its apps first); False if none ran."""
    info = running_info(data_dir)
    if info is None:
        return False
    pid = info["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_server(pid, data_dir):
        if time.monotonic() > deadline:
            raise DaemonError(f"the local workspace (pid {pid}) did not stop within {timeout} s")
        time.sleep(0.1)
    return True


def status(data_dir: Path) -> dict[str, Any] | None:
    """What `raycai local status` shows (never the key), or None when not running."""
    info = running_info(data_dir)
    if info is None:
        return None
    result = {k: info[k] for k in ("url", "project_id", "project_dir", "pid", "started_at")}
    result["data_dir"] = str(data_dir.resolve())
    try:
        response = httpx.get(
            f"{info['url']}/_local/apps",
            headers={"Authorization": f"Bearer {info['api_key']}"},
            timeout=5.0,
        )
        response.raise_for_status()
        apps = response.json()["apps"]
        result["apps"] = dict(Counter(app.get("status", "?") for app in apps))
    except (httpx.HTTPError, KeyError, ValueError):
        result["apps"] = None
    return result
