"""Where a Serve route is reached: through the head application's CML URL and inside the
project (the head's application port, which the head's proxy owns, under `/serve`), and a
`curl` command line that works as printed in a session of the project.

The printed line reads both credentials where they are: the workspace's from the session's
variable, the cluster's Ray token from its file. Neither value is printed unless asked.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raycai_core.credentials import Credentials
    from raycai_core.work.access import ClusterAccess

SERVE_PREFIX = "/serve"  # the head proxy's prefix for Serve routes
# What a CML session (and an app of the local workspace) has: the workload's API v2 key.
WORKSPACE_KEY_VARIABLE = "CDSW_APIV2_KEY"


@dataclass(frozen=True)
class RouteAddress:
    application: str
    route: str
    cml_url: str  # through the head application's URL (CML's login, then Ray's token)
    project_url: str  # from a pod of the project (Ray's token)
    curl: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def head_app_port(access: ClusterAccess) -> int:
    """The head application's port (CDSW_APP_PORT, the head proxy's); a head launcher older
    than the proxy publishes no `app_port` and its dashboard had the application's port."""
    return access.head.app_port or access.head.dashboard_port


def head_app_base(credentials: Credentials, cluster: str) -> str:
    """The head application's URL: `https://<head subdomain>.<domain>` on CML,
    `http://<head subdomain>.localhost:<port>` on the local workspace."""
    from raycai_core.work.access import head_app_url

    return head_app_url(credentials.host, credentials.project_id, cluster)


def serve_path(route: str) -> str:
    route = route if route.startswith("/") else f"/{route}"
    return SERVE_PREFIX + ("" if route == "/" else route)


def curl_line(url: str, token_file: str, token: str | None = None) -> str:
    """`curl` with the workspace key from the session's variable and the Ray token from its
    file (or `token` itself when the caller was asked to show it)."""
    ray = token if token is not None else f"$(cat {shlex.quote(token_file)})"
    return (
        f'curl -H "Authorization: Bearer ${WORKSPACE_KEY_VARIABLE}" '
        f'-H "X-Ray-Authorization: Bearer {ray}" {shlex.quote(url)}'
    )


def route_addresses(
    access: ClusterAccess,
    credentials: Credentials,
    routes: list[tuple[str, str]],
    *,
    token: str | None = None,
) -> list[RouteAddress]:
    """One address per (application, route prefix)."""
    base = head_app_base(credentials, access.name)
    inside = f"http://{access.head.ip}:{head_app_port(access)}"
    result = []
    for application, route in routes:
        path = serve_path(route)
        cml_url = base + path
        result.append(
            RouteAddress(
                application=application,
                route=route,
                cml_url=cml_url,
                project_url=inside + path,
                curl=curl_line(cml_url, str(access.token_path), token),
            )
        )
    return result
