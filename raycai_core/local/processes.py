"""OS-level work for app processes: environment, spawn, sessions in /proc, kill.

An app runs in its own session (its session id is its main pid), as a container would:
stopping it kills every process of that session, whatever the app started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_DROPPED_PREFIXES = ("CML_", "CDSW_", "RAYCAI_")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class ProcStat:
    state: str
    session: int
    start_time: int  # clock ticks since boot


def proc_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = text[text.rfind(")") + 2 :].split()
    return ProcStat(state=fields[0], session=int(fields[3]), start_time=int(fields[19]))


def session_members(session: int, started_after: int | None = None) -> list[int]:
    """Live (non-zombie) processes of a session, optionally only those started after a time."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is None or stat.session != session or stat.state == "Z":
            continue
        if started_after is not None and stat.start_time < started_after:
            continue
        members.append(int(entry.name))
    return members


def leftover_members(pid: int, pid_start: int | None) -> list[int]:
    """Processes left from an app whose main process was `pid` started at `pid_start`.

    Guards against pid reuse: if `pid` now belongs to another process (another start time),
    the session is someone else's and nothing is returned.
    """
    leader = proc_stat(pid)
    if pid_start is None or (leader is not None and leader.start_time != pid_start):
        return []
    return session_members(pid, started_after=pid_start)


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def kill_session(
    session: int, started_after: int | None = None, timeout: float = 5.0
) -> bool:
    """SIGKILL every process of the session until none is left; False if some survived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        members = await asyncio.to_thread(session_members, session, started_after)
        if not members:
            return True
        if loop.time() > deadline:
            return False
        signal_all(members, signal.SIGKILL)
        await asyncio.sleep(0.05)


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the main process, wait up to `grace` for it, then SIGKILL its whole session."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    await kill_session(proc.pid)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), 5.0)


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workspace's environment without platform variables and anything secret-looking."""
    source = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in source.items()
        if not name.startswith(_DROPPED_PREFIXES) and not _SECRET_NAME.search(name)
    }
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(
        [bin_dir, *[p for p in env.get("PATH", "").split(os.pathsep) if p]]
    )
    return env


async def spawn(
    argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, header: str
) -> asyncio.subprocess.Process:
    """Start `argv` in a new session, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, header.encode())
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        os.write(fd, f"could not start: {exc}\n".encode())
        raise
    finally:
        os.close(fd)
