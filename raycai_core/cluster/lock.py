"""An exclusive per-cluster lock for read-modify-write of cluster.json and what follows.

`fcntl.flock` on `<cluster dir>/.lock`: held by an open file description, so two managers in
one process exclude each other like two processes do, and the kernel releases it when the
holder dies. The file is opened off the event loop (the project directory may be a network
mount); the lock is then taken by polling with LOCK_NB, which never blocks, on the loop
itself, so that a cancelled waiter can never end up holding it from a leftover thread.
Readers take no lock: cluster.json is always replaced by an atomic rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from raycai_core.cluster.layout import ClusterPaths

POLL_S = 0.1


class ClusterLocked(Exception):
    """The cluster's lock is held by another operation (and we were told not to wait)."""


def _open(path: Path) -> int:
    """The lock file, created in an existing cluster directory (FileNotFoundError if none:
    locking never makes a cluster appear)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def cluster_lock(
    paths: ClusterPaths,
    *,
    wait: bool = True,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """Hold the cluster's lock for the body.

    `wait=False` raises ClusterLocked at once when another operation holds it; `timeout`
    bounds the wait (then ClusterLocked too). `on_wait` is called once, when we must wait.
    """
    fd = await asyncio.to_thread(_open, paths.lock_file)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while not _try_lock(fd):
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise ClusterLocked(
                    f"another operation on cluster {paths.cluster!r} is running "
                    "(scale, heal or down); try again when it has finished"
                )
            if not told and on_wait is not None:
                on_wait()
                told = True
            await asyncio.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        # Released even when the body was cancelled; a thread would race the next holder.
        _release(fd)


def lock_free(paths: ClusterPaths) -> bool:
    """Nobody holds the cluster's lock now (an update recorded as running is then one whose
    process died). Takes the lock for an instant when it is free."""
    try:
        fd = os.open(paths.lock_file, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases a lock taken here
    return True
