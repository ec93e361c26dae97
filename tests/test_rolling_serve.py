"""After a rolling update restarted the head, the stored Serve config is deployed again on
the new head, with the new head's Serve address (work/serve_redeploy.py), against the
stand-in Ray 2.60 dashboard (tests/fake_dashboard.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.work.serve_redeploy import redeploy_stored
from tests.fake_dashboard import FakeDashboard, running_dashboard
from tests.test_work_client import publish_fake


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        yield fake


async def test_the_stored_config_goes_to_the_new_head_with_its_serve_port(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = publish_fake(tmp_path, dash, serve_port="8123")
    assert await redeploy_stored(tmp_path, "demo") == 0  # nothing stored: nothing sent
    assert dash.serve_configs == []
    stored = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000},  # the old head's
        "applications": [{"name": "a", "route_prefix": "/a", "import_path": "m:app"}],
    }
    paths.serve_json.write_text(json.dumps(stored))
    assert await redeploy_stored(tmp_path, "demo") == 1
    (sent,) = dash.serve_configs
    assert sent["http_options"]["port"] == 8123
    assert sent["applications"] == stored["applications"]
