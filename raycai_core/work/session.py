"""One cluster's work client for a poller: re-reads the head's address and the token each
time (off the event loop: the project may be a network mount) and keeps the client while
both stay the same, so polls reuse their connection."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from raycai_core.cluster.records import read_token
from raycai_core.credentials import Secret
from raycai_core.ray.client import RayClient
from raycai_core.work.access import ClusterAccess, load_access


class ClusterWork:
    def __init__(self, project_dir: Path, name: str, *, timeout: float = 5.0) -> None:
        self.project_dir = Path(project_dir)
        self.name = name
        self.timeout = timeout
        self.access: ClusterAccess | None = None
        self._key: tuple[str, Secret | None] | None = None
        self._client: RayClient | None = None

    def _read(self) -> tuple[ClusterAccess, Secret | None]:
        access = load_access(self.project_dir, self.name)
        return access, read_token(access.paths)

    async def client(self) -> RayClient:
        """Raises ClusterAccessError when the head has not published itself (yet)."""
        access, token = await asyncio.to_thread(self._read)
        self.access = access
        key = (access.dashboard_url, token)
        if self._client is None or key != self._key:
            await self.aclose()
            self._client = RayClient(access.dashboard_url, token=token, timeout=self.timeout)
            self._key = key
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._key = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
