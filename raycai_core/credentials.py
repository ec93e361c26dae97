"""Where the CML host, API key and project come from.

Order, field by field, as cmlapi users expect: explicit arguments (flags), then the
variables users export (`CML_HOST`, `CML_API_KEY`, `CML_PROJECT_ID`), then the variables a
CML session injects (`CDSW_DOMAIN` or `CDSW_API_URL`, `CDSW_APIV2_KEY`, `CDSW_PROJECT_ID`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class Secret:
    """A string that never shows itself in repr, str, format or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


class MissingCredentials(Exception):
    """Some of host, key or project could not be found; the message says where to set them."""


SOURCE_ARGUMENT = "argument"
SOURCE_ENV = "environment"
SOURCE_SESSION = "CML session"


@dataclass(frozen=True)
class Credentials:
    host: str
    api_key: Secret = field(repr=False)
    project_id: str
    source: str = SOURCE_ARGUMENT

    @property
    def api_base(self) -> str:
        return f"{self.host}/api/v2"

    @property
    def domain(self) -> str:
        """The host without its scheme (app URLs: `app_url`)."""
        return re.sub(r"^[a-z]+://", "", self.host)

    def app_url(self, subdomain: str) -> str:
        return app_url(self.host, subdomain)

    def __repr__(self) -> str:
        return (
            f"Credentials(host={self.host!r}, project_id={self.project_id!r}, "
            f"source={self.source!r}, api_key=<hidden>)"
        )


def normalise_host(value: str) -> str:
    """`ml-x.example.com`, `https://ml-x.example.com/`, `.../api/v1` -> `https://ml-x.example.com`;
    a loopback host without a scheme (the local workspace's `localhost:<port>`) gets http."""
    host = value.strip().rstrip("/")
    host = re.sub(r"/api/v[12]$", "", host)
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", host):
        scheme = "http" if urlsplit(f"//{host}").hostname in LOOPBACK_HOSTS else "https"
        host = f"{scheme}://{host}"
    return host.rstrip("/")


def app_url(host: str, subdomain: str) -> str:
    """An application's URL from the workspace's host or domain (`CDSW_DOMAIN`):
    `https://<subdomain>.<domain>` on CML; on the local workspace (a loopback host,
    `127.0.0.1:<port>` or `localhost:<port>`) `http://<subdomain>.localhost:<port>`, which
    its ingress routes by the Host header (see DEVELOPERS.md, "Local workspace contract")."""
    parts = urlsplit(host if "://" in host else f"//{host}")
    if parts.hostname in LOOPBACK_HOSTS:
        port = f":{parts.port}" if parts.port else ""
        return f"http://{subdomain}.localhost{port}"
    return f"{parts.scheme or 'https'}://{subdomain}.{parts.netloc}"


def _first(*candidates: tuple[str | None, str]) -> tuple[str | None, str]:
    for value, source in candidates:
        if value is not None and value.strip():
            return value.strip(), source
    return None, ""


def in_cml_session(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("CDSW_PROJECT_ID") and (env.get("CDSW_DOMAIN") or env.get("CDSW_API_URL")))


def resolve_credentials(
    host: str | None = None,
    api_key: str | None = None,
    project_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    prefer_session: bool = False,
) -> Credentials:
    """Credentials from arguments, then `CML_*`, then the CML session's `CDSW_*` variables.

    `prefer_session` puts a CML session's own variables before `CML_*` (raycai-tui does so:
    inside a session, the session's project is the one whose files are at hand).
    Raises MissingCredentials naming every missing value and the places it is read from.
    """
    env = os.environ if environ is None else environ
    exported = {
        "host": [(env.get("CML_HOST"), SOURCE_ENV)],
        "key": [(env.get("CML_API_KEY"), SOURCE_ENV)],
        "project": [(env.get("CML_PROJECT_ID"), SOURCE_ENV)],
    }
    session = {
        "host": [
            (env.get("CDSW_DOMAIN"), SOURCE_SESSION),
            (env.get("CDSW_API_URL"), SOURCE_SESSION),
        ],
        "key": [(env.get("CDSW_APIV2_KEY"), SOURCE_SESSION)],
        "project": [(env.get("CDSW_PROJECT_ID"), SOURCE_SESSION)],
    }
    first, second = (
        (session, exported)
        if prefer_session and in_cml_session(env)
        else (
            exported,
            session,
        )
    )

    def pick(field: str, given: str | None) -> tuple[str | None, str]:
        return _first((given, SOURCE_ARGUMENT), *first[field], *second[field])

    resolved_host, host_source = pick("host", host)
    resolved_key, key_source = pick("key", api_key)
    resolved_project, project_source = pick("project", project_id)
    missing = []
    if resolved_host is None:
        missing.append("the workspace host (--host, CML_HOST, or CDSW_DOMAIN in a CML session)")
    if resolved_key is None:
        missing.append("an API v2 key (--api-key, CML_API_KEY, or CDSW_APIV2_KEY in a CML session)")
    if resolved_project is None:
        missing.append(
            "the project id (--project, CML_PROJECT_ID, or CDSW_PROJECT_ID in a session)"
        )
    if missing:
        raise MissingCredentials("Missing " + "; ".join(missing) + ".")
    assert resolved_host and resolved_key and resolved_project
    sources = {host_source, key_source, project_source}
    source = sources.pop() if len(sources) == 1 else "mixed: " + ", ".join(sorted(sources))
    return Credentials(
        host=normalise_host(resolved_host),
        api_key=Secret(resolved_key),
        project_id=resolved_project,
        source=source,
    )
