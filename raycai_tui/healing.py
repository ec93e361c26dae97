"""Healing in the TUI: the policy is raycai_core's (raycai_core.cluster.healing); this
module runs it after a poll, from the snapshot, through ClusterManager.heal.

Imported lazily by the app (after the first frame), so it may import raycai_core.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from raycai_core.cluster.healing import MISSING_GRACE_S, HealPlanner, heal_reason
from raycai_core.cluster.types import ActionsFailed, HealAction
from raycai_tui.messages import Event

if TYPE_CHECKING:
    from raycai_tui.services import Services, Snapshot

__all__ = ["MISSING_GRACE_S", "HealPlanner", "heal_clusters", "heal_reason"]


async def heal_clusters(services: Services, snapshot: Snapshot, names: list[str]) -> list[Event]:
    """Heal each named cluster; returns what was done (or why it could not be), as events."""
    events: list[Event] = []
    for name in names:
        manager = services.manager()
        try:
            view = await services.observer.observe(
                name, members=snapshot.members.get(name, []), with_ray=False
            )
            actions = await manager.heal(name, view)
        except ActionsFailed as exc:  # what was healed before the failing step, then why
            events.extend(_healed(name, [HealAction.of(d) for d in exc.done]))
            events.append(Event(time.time(), name, f"healing failed: {exc.failed[0]}", "error"))
            continue
        except Exception as exc:  # one cluster's failure must not stop healing the others
            events.append(Event(time.time(), name, f"healing failed: {exc}", "error"))
            continue
        events.extend(_healed(name, actions))
    return events


def _healed(name: str, actions: list[HealAction]) -> list[Event]:
    return [
        Event(time.time(), name, f"healed {a.node}: {a.action} ({a.reason})", "warning")
        for a in actions
    ]
