"""The app's rolling update of one cluster (run by the operations service, which owns it:
leaving the cluster screen does not cancel it). The core carries it out under the cluster's
lock and records its progress in rolling.json; then `up` converges the counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raycai_core.cluster.types import Progress, ProgressCallback
    from raycai_core.spec import ClusterSpec
    from raycai_tui.services import Services


async def run_update(
    services: Services,
    progress: ProgressCallback,
    spec: ClusterSpec,
    restart_head: bool,
    show: Callable[[str], None],
) -> str:
    """Carry the update out; `show` gets how far it is (`1 of 2 worker(s) replaced; ...`)
    at each of its steps. Returns the line to tell when it is done."""
    from raycai_core.cluster.rolling import RollingUpdate

    def step(event: Progress) -> None:
        progress(event)
        # The update's record as it keeps it in memory (this runs on the app's event loop:
        # no reading of rolling.json here).
        if event.step == "update" and update.record is not None:
            show(update.record.progress_text())

    manager = services.manager(step)
    update = RollingUpdate(manager, spec, restart_head=restart_head)
    record = await update.run()
    await manager.up(spec, wait=False, timeout=900.0)
    return f"update done ({record.progress_text()})"
