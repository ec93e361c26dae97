"""What a driver in this project needs to reach a cluster, read from the project files.

The head publishes its address in head.json; the token stays in its 0600 file and only its
path is ever handed out. Ray Client (`ray://`) needs the driver's Python (major.minor) and Ray
versions to match the cluster's, so both are compared before anything connects.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from raycai_core.atomic import read_json
from raycai_core.cluster.layout import DEFAULT_FOLDER, FOLDER_ENV, ClusterPaths
from raycai_core.cluster.records import HeadAddress


class ClusterAccessError(Exception):
    """The cluster cannot be reached from its project files; the message says why."""


@dataclass(frozen=True)
class ClusterAccess:
    name: str
    paths: ClusterPaths
    head: HeadAddress
    python_version: str  # "" when the head did not publish it (older launcher)

    @property
    def token_path(self) -> Path:
        return self.paths.auth_token

    @property
    def client_address(self) -> str:
        return self.head.client_address

    @property
    def dashboard_url(self) -> str:
        return self.head.dashboard_url

    def environment(self) -> dict[str, str]:
        """What a driver's environment needs (no secret: the token stays in its file); with a
        launcher folder other than `.raycai`, RAYCAI_DIR too (`raycai.connect` finds it)."""
        env = {
            "RAY_ADDRESS": self.client_address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_API_SERVER_ADDRESS": self.dashboard_url,
            # No RAY_SERVE_DEFAULT_HTTP_HOST: a Serve a driver starts listens on Ray's
            # default, loopback (reached through the head proxy with the token).
        }
        if self.paths.folder != DEFAULT_FOLDER:
            env[FOLDER_ENV] = self.paths.folder
        return env


def load_access(project_dir: Path, name: str) -> ClusterAccess:
    """The cluster's published head and token path; ClusterAccessError when not usable."""
    paths = ClusterPaths(Path(project_dir), name)
    if not paths.root.is_dir():
        raise ClusterAccessError(
            f"no cluster named {name!r} in {paths.project_dir} (create it with `raycai up {name}`)"
        )
    raw = read_json(paths.head_json)
    head = HeadAddress.from_json(raw)
    if head is None:
        raise ClusterAccessError(
            f"the head of {name!r} has not published its address yet ({paths.head_json} is "
            f"missing or unreadable): is the cluster up? (`raycai status {name}`)"
        )
    if not paths.auth_token.is_file():
        raise ClusterAccessError(
            f"the Ray token of {name!r} is missing ({paths.auth_token}); `raycai up {name}` "
            "renders the cluster again"
        )
    python = str(raw.get("python_version") or "") if isinstance(raw, dict) else ""
    return ClusterAccess(name=name, paths=paths, head=head, python_version=python)


def local_ray_version() -> str | None:
    """The Ray installed for this Python (read from its metadata: ray is not imported)."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def local_python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def local_versions() -> tuple[str, str | None]:
    """(Python, Ray) of this process; Ray is None when it is not installed."""
    return local_python_version(), local_ray_version()


def version_problems(access: ClusterAccess, python: str, ray: str | None) -> list[str]:
    """Why a driver with this Python and Ray (None: not installed) could not use the
    cluster; empty when it can. An unknown cluster Python (an older head) is not checked."""
    problems = []
    cluster_ray = access.head.ray_version
    if ray is None:
        problems.append(
            f"Ray is not installed for this Python ({sys.executable}); the cluster runs Ray "
            f"{cluster_ray or '?'}: pip install 'ray[default]=={cluster_ray or '<version>'}'"
        )
    elif cluster_ray and ray != cluster_ray:
        problems.append(
            f"this driver has Ray {ray} but cluster {access.name!r} runs Ray {cluster_ray}: "
            f"pip install 'ray[default]=={cluster_ray}' (Ray Client needs the same version)"
        )
    if access.python_version and _minor(python) != _minor(access.python_version):
        problems.append(
            f"this driver runs Python {python} but cluster {access.name!r} runs Python "
            f"{access.python_version}: use a Python {_minor(access.python_version)} "
            "interpreter (the session's runtime with the cluster's Python), or create the "
            "cluster with a runtime of this Python"
        )
    return problems


def shell_exports(environment: dict[str, str]) -> str:
    """`export K=V` lines for a POSIX shell."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())


def head_app_url(domain: str, project_id: str, name: str) -> str:
    """The head application's CML URL (the Ray dashboard, behind CML's login and Ray's token);
    `domain` is the workspace's host or domain (http://<subdomain>.localhost:<port> locally)."""
    from raycai_core.credentials import app_url
    from raycai_core.naming import HEAD_NODE, subdomain

    return app_url(domain, subdomain(project_id, name, HEAD_NODE))
