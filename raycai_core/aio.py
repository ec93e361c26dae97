"""`asyncio.run` for CLI commands (and raycai-tui's loop), never waiting for a worker thread.

`asyncio.run` joins its default executor's threads when it ends, and Python joins every
ThreadPoolExecutor thread at exit. A thread stuck in a blocking call (a read on a hung
network mount, a DNS lookup that times out after 30 s) then kept a ctrl+c'ed command alive
for as long. Here each call handed to a thread (`asyncio.to_thread`, `loop.getaddrinfo`)
runs in its own daemon thread that nothing joins: a cancelled caller stops waiting for it,
and the process ends without it. Writes are atomic (temp file + rename), so an abandoned
write leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonThreadExecutor(ThreadPoolExecutor):
    """Each call in a daemon thread of its own, which neither shutdown nor exit waits for.

    (A ThreadPoolExecutor subclass only because the event loop accepts no other.)
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting caller, as the pool does
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="raycai-io", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: a thread still running is abandoned, never joined."""


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` with `asyncio.run` (a ctrl+c cancels it and raises KeyboardInterrupt), but
    without waiting for any thread it started."""
    return asyncio.run(_with_daemon_threads(coro))


async def _with_daemon_threads(coro: Coroutine[Any, Any, T]) -> T:
    asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
    return await coro
