"""Watch a cluster until every node joined: the one watch behind `raycai up --wait`, `raycai
scale --wait` (`ClusterManager.wait_ready`) and the TUI's create form.

The rule is `ClusterView.ready` (every node joined and Ray answered; autoscaled: the head and
at least min workers). Each tick is one `Observer.observe`: one CML list call (none when the
caller passes this tick's applications, as the TUI does from its own poll), the project's
files and Ray's node list. The watch yields every tick's view and ends after the first ready
one; what to do about a failed node or a deadline is the caller's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.observe import Observer
from raycai_core.cluster.view import ClusterView

MembersSource = Callable[[], Awaitable[list[ClusterApp] | None]]


async def watch_until_ready(
    observer: Observer,
    name: str,
    *,
    interval: float,
    members: MembersSource | None = None,
) -> AsyncIterator[ClusterView]:
    """Yield `name`'s view every `interval` seconds until it is ready (the last one yielded).

    `members`: where this tick's applications come from (None from it, or no `members` at
    all: `observe` lists them, one CML call)."""
    while True:
        apps = await members() if members is not None else None
        view = await observer.observe(name, members=apps)
        yield view
        if view.ready:
            return
        await asyncio.sleep(interval)


def progress_line(view: ClusterView) -> str:
    """`nodes joined Ray: k/n`, and what holds it back once that alone does not."""
    line = f"nodes joined Ray: {view.nodes_joined}/{view.nodes_wanted}"
    failed = view.failed_row
    if failed is not None:
        record = failed.record
        return f"{line}; {failed.node}: {(record.error if record else None) or 'failed'}"
    note = view.schedule_note  # applications the workspace has not run for a while
    if note is not None:
        return f"{line}; {note}"
    if view.all_joined and not view.ready:  # the launchers say so; Ray has not confirmed
        why = f"Ray does not answer: {view.ray_error}" if view.ray_error else "not asked yet"
        return f"{line} by the launchers' word; waiting for Ray's node list ({why})"
    return line
