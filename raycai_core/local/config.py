"""Settings of one local workspace: timings, quota, runtimes. Tests shorten the timings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Realistic CML runtime images (Cloudera's PBJ Workbench runtimes).
DEFAULT_RUNTIMES: tuple[dict[str, str], ...] = (
    {
        "image_identifier": "docker.repository.cloudera.com/cloudera/cdsw/"
        "ml-runtime-pbj-workbench-python3.11-standard:2025.09.1-b5",
        "editor": "PBJ Workbench",
        "kernel": "Python 3.11",
        "edition": "Standard",
        "description": "Standard edition Python runtime provided by Cloudera",
        "full_version": "2025.09.1-b5",
        "status": "ENABLED",
    },
    {
        "image_identifier": "docker.repository.cloudera.com/cloudera/cdsw/"
        "ml-runtime-pbj-workbench-python3.10-standard:2025.09.1-b5",
        "editor": "PBJ Workbench",
        "kernel": "Python 3.10",
        "edition": "Standard",
        "description": "Standard edition Python runtime provided by Cloudera",
        "full_version": "2025.09.1-b5",
        "status": "ENABLED",
    },
    {
        "image_identifier": "docker.repository.cloudera.com/cloudera/cdsw/"
        "ml-runtime-jupyterlab-python3.11-standard:2025.09.1-b5",
        "editor": "JupyterLab",
        "kernel": "Python 3.11",
        "edition": "Standard",
        "description": "Standard edition JupyterLab Python runtime provided by Cloudera",
        "full_version": "2025.09.1-b5",
        "status": "ENABLED",
    },
)

# Fields that `PUT /_local/config` and `LocalWorkspace.update_config` may change at run time.
RUNTIME_FIELDS = (
    "start_delay_s",
    "quota_cpu",
    "quota_memory",
    "quota_gpu",
    "restart_attempts",
    "restart_delay_s",
    "restart_reset_s",
    "stop_grace_s",
    "workload_key",
    "refuse_dot_folder_scripts",
)


@dataclass
class WorkspaceConfig:
    """How the local workspace behaves. Every timing is in seconds.

    Quota fields are None for "no limit"; an app whose cpu/memory/nvidia_gpu would push the
    sum over a limit waits in STARTING (first come, first served) until resources free up.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0: reuse the previous run's port when free, else any free port
    start_delay_s: float = 0.0  # before each spawn, standing for pod scheduling
    quota_cpu: float | None = None
    quota_memory: float | None = None  # GB
    quota_gpu: int | None = None
    restart_attempts: int = 3  # platform restarts of a failed app (CML: 3)
    # CML waits five minutes between restarts, so recovery is the launcher's job; tests and
    # benchmarks that need the platform's restart set a short delay and say why.
    restart_delay_s: float = 300.0
    restart_reset_s: float = 60.0  # RUNNING this long before failing resets the count
    stop_grace_s: float = 20.0  # SIGTERM -> SIGKILL of the app's whole session
    ready_poll_s: float = 0.1
    page_size_default: int = 10  # small, so that clients that forget to page are caught
    page_size_max: int = 5000
    app_port_range: tuple[int, int] = (20000, 29999)
    # CDSW_APIV2_KEY in every app's environment, as CML gives its workloads: the workspace's
    # own workload key (acts as the project's user), never the user's key.
    workload_key: bool = True
    # Whether CML runs an application's script from a dot-folder (raycai's `.raycai/`) is
    # not known; True makes such an application FAIL at start, as CML presumably would if it
    # refused (`raycai local start --refuse-dot-folders`; the doctor's probe test uses it).
    refuse_dot_folder_scripts: bool = False
    project_name: str = "raycai-local"
    runtimes: tuple[dict[str, str], ...] = DEFAULT_RUNTIMES
    runtime_addons: tuple[dict[str, Any], ...] = ()

    def runtime_view(self) -> dict[str, Any]:
        """The fields `GET /_local/config` shows."""
        return {name: getattr(self, name) for name in RUNTIME_FIELDS}

    def updated(self, changes: dict[str, Any]) -> WorkspaceConfig:
        """A copy with `changes` (only RUNTIME_FIELDS) applied; ValueError names a bad one."""
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in RUNTIME_FIELDS:
                raise ValueError(f"unknown config field {name!r}")
            values[name] = _check(name, value)
        return dataclasses.replace(self, **values)


def _check(name: str, value: Any) -> Any:
    if name in ("workload_key", "refuse_dot_folder_scripts"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name.startswith("quota_") and value is None:
        return None
    integral = name in ("restart_attempts", "quota_gpu")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    if integral and int(value) != value:
        raise ValueError(f"{name} must be an integer")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return int(value) if integral else float(value)
