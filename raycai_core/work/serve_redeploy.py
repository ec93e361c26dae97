"""Deploy the stored Serve config (serve.json) again on a new head: a rolling update's head
restart starts Ray without the old GCS state, so Serve has no application until then (the
head launcher does the same by itself after a crash that lost the state)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from raycai_core.cluster.records import read_token
from raycai_core.ray.client import RayClient
from raycai_core.work.access import load_access
from raycai_core.work.serve_config import app_names, apply_listen, read_stored
from raycai_core.work.serve_deploy import apply_config, serve_listen


async def redeploy_stored(project_dir: Path, name: str, *, timeout: float = 120.0) -> int:
    """PUT the stored config (with this head's Serve address) until Ray accepts it; the
    number of applications sent (0 when nothing is stored). Raises the last error."""
    access = await asyncio.to_thread(load_access, project_dir, name)
    stored = await asyncio.to_thread(read_stored, access.paths)
    if not stored:
        return 0
    listen = serve_listen(access)
    config, _ = apply_listen(stored, listen.port, listen.host)
    token = await asyncio.to_thread(read_token, access.paths)
    deadline = time.monotonic() + timeout
    async with RayClient(access.dashboard_url, token=token, timeout=10.0) as client:
        while True:
            try:
                await apply_config(client, access, config)
                return len(app_names(config))
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(2.0)
