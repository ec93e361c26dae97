"""The app's rolling update of one cluster (run by the operations service, which owns it:
leaving the cluster screen does not cancel it). The core carries it out under the cluster's
lock and records its progress in rolling.json; then `up` converges the counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raycai_core.cluster.types import ProgressCallback
    from raycai_core.spec import ClusterSpec
    from raycai_tui.services import Services


async def run_update(
    services: Services, progress: ProgressCallback, spec: ClusterSpec, restart_head: bool
) -> str:
    """Carry the update out; the line to tell when it is done."""
    from raycai_core.cluster.rolling import RollingUpdate

    manager = services.manager(progress)
    record = await RollingUpdate(manager, spec, restart_head=restart_head).run()
    await manager.up(spec, wait=False, timeout=900.0)
    return f"update done ({record.progress_text()})"
