"""One real cluster for the serving package (head + 1 worker, the Serve example deployed with
`raycai serve deploy`), shared by its modules, which run in file order: the recovery tests
(test_recovery_ray.py: Ray killed in every way, the head's pod lost) and then the serving
tests (test_serve_ray.py), on the cluster those recoveries left, which must serve as well.

The workspace restarts a failed application as CML does, at most 3 times, 300 s apart (the
default): what comes back within the tests' deadlines came back by itself, inside its
application. The one test that needs the platform's restart shortens the delay itself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.local import WorkspaceConfig, WorkspaceHandle, run_workspace_in_thread
from tests.conftest import in_private_netns
from tests.helpers import SMALL_NODES, raycai

NAME = "srv"
EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "serve"


@dataclass(frozen=True)
class Served:
    handle: WorkspaceHandle
    config: Path  # the example's config, copied into the project
    token: str
    status: str  # `raycai serve status`'s output
    apps: dict[str, dict[str, Any]]  # `raycai serve status --json`'s applications by name

    @property
    def paths(self) -> ClusterPaths:
        return ClusterPaths(self.handle.project_dir, NAME)

    def refreshed(self) -> Served:
        """The same cluster, its Serve status read again (a head on a new pod has a new
        address inside the project; its URL through CML stays)."""
        status = raycai(self.handle, "serve", "status", NAME).stdout
        return replace(self, status=status, apps=serve_apps(self.handle))

    def url(self, app: str) -> str:
        """The route's URL through the head application's URL (`http://<sub>.localhost:<port>`)."""
        return self.apps[app]["cml_url"]

    def ingress(self, app: str, query: str = "") -> tuple[str, dict[str, str]]:
        """(URL on 127.0.0.1, Host header) for the route's head application URL: Python's
        resolver may not know `*.localhost`, so connect to loopback with the Host."""
        parts = urlsplit(self.url(app))
        port = parts.port or 80
        return f"http://127.0.0.1:{port}{parts.path}{query}", {"Host": parts.netloc}

    def workspace_key(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.handle.api_key}"}

    def ray_token(self) -> dict[str, str]:
        return {"X-Ray-Authorization": f"Bearer {self.token}"}


def serve_apps(handle: WorkspaceHandle) -> dict[str, dict[str, Any]]:
    state = json.loads(raycai(handle, "serve", "status", NAME, "--json").stdout)
    return {a["name"]: a for a in state["applications"]}


@pytest.fixture(scope="package")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The workspace, cluster NAME (head + 1 worker) and the example deployed on it."""
    if os.environ.get("RAYCAI_NETNS") != "0" and not in_private_netns():
        pytest.skip("needs a loopback-only network namespace: run it with ./dev test")
    data_dir = tmp_path_factory.mktemp("workspace")
    config = WorkspaceConfig(stop_grace_s=5.0, ready_poll_s=0.05)
    assert config.restart_delay_s == 300.0  # CML's: nothing here waits for the platform
    with run_workspace_in_thread(data_dir, config) as handle:
        raycai(handle, "up", NAME, "--workers", "1", *SMALL_NODES)
        try:
            # What a user does: copy the example into the project, deploy its config.
            copy = handle.project_dir / "examples" / "serve"
            shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
            config_file = copy / "serve_config.yaml"
            deployed = raycai(handle, "serve", "deploy", NAME, str(config_file))
            assert "sentiment: RUNNING" in deployed.stdout and "stream: RUNNING" in deployed.stdout
            assert f"working_dir . -> local://{copy}" in deployed.stderr
            token = ClusterPaths(handle.project_dir, NAME).auth_token.read_text().strip()
            yield Served(handle, config_file, token, "", {}).refreshed()
        finally:
            raycai(handle, "down", NAME, "--yes", check=False)
