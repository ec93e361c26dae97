"""Which workspace and project a command works on, and where the project's files are.

A real CML workspace when credentials are found (flags, CML_*, or a CML session's CDSW_*);
otherwise the embedded local workspace, started on demand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raycai_core.credentials import (
    SOURCE_SESSION,
    Credentials,
    MissingCredentials,
    in_cml_session,
    resolve_credentials,
)

CML_SESSION_HOME = Path("/home/cdsw")
_CREDENTIAL_VARS = (
    "CML_HOST",
    "CML_API_KEY",
    "CML_PROJECT_ID",
    "CDSW_DOMAIN",
    "CDSW_API_URL",
    "CDSW_APIV2_KEY",
    "CDSW_PROJECT_ID",
)


class TargetError(Exception):
    """No usable workspace/project; the message says what to set."""


class FilesNotLocal(TargetError):
    """Credentials, but no project directory here: remote mode reaches the files by API."""


# A remote target's project_dir: never a real directory (its commands use a staging mirror).
REMOTE_PROJECT_DIR = Path("/nonexistent/raycai-remote-project")


@dataclass(frozen=True)
class Target:
    credentials: Credentials
    project_dir: Path
    kind: Literal["cml", "local"]
    # The project's files are not on this machine: `up`, `list`, `status`, `logs` and `down`
    # reach them through the API v2 files endpoints (raycai_core.cluster.remote).
    remote: bool = False

    @property
    def label(self) -> str:
        where = " (remote: the project's files through the API)" if self.remote else ""
        if self.kind == "local":
            return f"local workspace {self.credentials.host}{where}"
        return f"CML {self.credentials.domain}{where}"

    def __repr__(self) -> str:
        return f"Target(kind={self.kind!r}, host={self.credentials.host!r}, project_dir=...)"


def _any_credentials(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip() for name in _CREDENTIAL_VARS)


def resolve_target(
    *,
    host: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
    project_dir: str | os.PathLike[str] | None = None,
    local: bool | None = None,
    local_data_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prefer_session: bool = False,
    remote: bool | None = None,
) -> Target:
    """Resolve the target; `local=None` means "local only when no credentials are set".

    `prefer_session`: inside a CML session, its own variables come before `CML_*`.
    `remote=None`: remote (the project's files through the API) when credentials are set
    and no project directory is given or found; True: remote whatever is found.
    """
    env = os.environ if environ is None else environ
    if remote and project_dir:
        raise TargetError(
            "--remote reaches the project's files through the API; --project-dir says they "
            "are here: give one of them"
        )
    explicit = any(v for v in (host, api_key, project))
    if local is None:
        local = not explicit and not _any_credentials(env)
    if local:
        target = _local_target(project_dir, local_data_dir)
        if remote:
            return Target(target.credentials, REMOTE_PROJECT_DIR, "local", remote=True)
        return target
    try:
        credentials = resolve_credentials(
            host, api_key, project, environ=env, prefer_session=prefer_session
        )
    except MissingCredentials as exc:
        raise TargetError(f"{exc} Or use --local for the embedded local workspace.") from None
    if remote:
        return Target(credentials, REMOTE_PROJECT_DIR, "cml", remote=True)
    try:
        return Target(credentials, _project_dir(project_dir, credentials, env), "cml")
    except FilesNotLocal:
        if remote is None:
            return Target(credentials, REMOTE_PROJECT_DIR, "cml", remote=True)
        raise


def _project_dir(
    explicit: str | os.PathLike[str] | None, credentials: Credentials, env: Mapping[str, str]
) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env.get("RAYCAI_PROJECT_DIR"):
        return Path(env["RAYCAI_PROJECT_DIR"]).expanduser().resolve()
    if credentials.source == SOURCE_SESSION or in_cml_session(env):
        session_project = env.get("CDSW_PROJECT_ID", "")
        if session_project and credentials.project_id != session_project:
            raise TargetError(
                f"this CML session belongs to project {session_project}, but the project "
                f"chosen is {credentials.project_id} (from {credentials.source}): its "
                "applications could not run the launcher scripts written here. Unset "
                "CML_PROJECT_ID, or pass --project-dir with that project's files"
            )
        return CML_SESSION_HOME if CML_SESSION_HOME.is_dir() else Path.home()
    raise FilesNotLocal(
        "raycai writes launcher scripts into the project's files, which are local only inside "
        "a CML session: run it in a session's terminal, pass --project-dir (or set "
        "RAYCAI_PROJECT_DIR) to the project's directory, or --remote to reach them through "
        "the API"
    )


def _local_target(
    project_dir: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
) -> Target:
    from raycai_core.credentials import Secret
    from raycai_core.local.daemon import DaemonError, default_data_dir, start

    directory_of_data = Path(data_dir) if data_dir else default_data_dir()
    try:
        info, _ = start(directory_of_data, [])
    except DaemonError as exc:
        raise TargetError(f"could not start the embedded local workspace: {exc}") from None
    credentials = Credentials(
        host=str(info["url"]),
        api_key=Secret(str(info["api_key"])),
        project_id=str(info["project_id"]),
        source="local workspace",
    )
    if project_dir:
        directory = Path(project_dir).expanduser().resolve()
    else:
        directory = Path(str(info["project_dir"]))
    return Target(credentials, directory, "local")
