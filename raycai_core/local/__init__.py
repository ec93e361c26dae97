"""The embedded local CML workspace: the API v2 subset over HTTP on 127.0.0.1, with apps
run as real process groups. See DEVELOPERS.md ("Local workspace contract").

    ws = LocalWorkspace(data_dir, WorkspaceConfig(stop_grace_s=5.0))
    url = await ws.start()
    ...
    await ws.stop()

or, from synchronous code and Textual tests:

    with run_workspace_in_thread(data_dir, config) as handle:
        handle.url, handle.api_key, handle.project_id, handle.project_dir
        handle.credentials(), handle.stats(), handle.set_faults(error_rates={503: 0.1})
"""

from raycai_core.local.config import WorkspaceConfig
from raycai_core.local.faults import FaultConfig
from raycai_core.local.runner import WorkspaceHandle, run_workspace_in_thread
from raycai_core.local.workspace import LocalWorkspace

__all__ = [
    "FaultConfig",
    "LocalWorkspace",
    "WorkspaceConfig",
    "WorkspaceHandle",
    "run_workspace_in_thread",
]
