"""Application URLs, as CML's ingress serves them: `http://<subdomain>.localhost:<port>/`.

A request to the workspace's port whose `Host` is `<subdomain>.localhost[:<port>]` goes to
that application's `CDSW_APP_PORT` on 127.0.0.1 (where CML's readiness check and ours look),
streamed both ways; any other host is the API. Authentication stands in for CML's login:
the workspace's API key or workload key as `Authorization: Bearer <key>`, or the session
cookie set by `POST /_local/login` on the application's host (the form the 401 page shows);
an application created with `bypass_authentication` needs neither. The workspace credential
(that `Authorization` header, that cookie) is never forwarded; any other `Authorization`
(an application's own token) is. Ingress requests are not counted in `/_local/stats` and no
fault applies to them: they are not CML API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import secrets
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from raycai_core.local.faults import Handler
from raycai_core.local.state import RUNNING, AppRecord

if TYPE_CHECKING:
    from raycai_core.local.workspace import LocalWorkspace

log = logging.getLogger(__name__)

DOMAIN_HOST = "localhost"
SESSION_COOKIE = "raycai_local_session"
LOGIN_PATH = "/_local/login"
MAX_SESSIONS = 1000

# RFC 9110 7.6.1, plus the proxy's own: never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# What aiohttp's client would add by itself: the application gets the browser's headers only.
_SKIP_AUTO = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_WS_HEADERS = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
    | {"sec-websocket-protocol", "host", "content-length"}
)


def app_subdomain(host: str) -> str | None:
    """`demo.localhost:8080` -> `demo`; None for a host that is not an application's."""
    name = host.strip().lower()
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    name = name.rstrip(".")
    suffix = "." + DOMAIN_HOST
    if not name.endswith(suffix) or len(name) == len(suffix):
        return None
    return name[: -len(suffix)]


def _hop_by_hop(headers: CIMultiDictProxy[str]) -> set[str]:
    """The fixed hop-by-hop names and those the Connection header lists."""
    names = set(HOP_BY_HOP)
    for value in headers.getall("Connection", []):
        names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


class Ingress:
    """Serves every application host of one workspace; `middleware` goes first in the
    workspace's aiohttp app (before stats, faults and the API's auth)."""

    def __init__(self, ws: LocalWorkspace) -> None:
        self.ws = ws
        self._sessions: dict[str, None] = {}  # login cookies (insertion order: oldest first)
        self._client: aiohttp.ClientSession | None = None
        self.requests = 0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        subdomain = app_subdomain(request.host)
        if subdomain is None:
            return await handler(request)
        self.requests += 1
        app = next((a for a in self.ws.store.state.apps.values() if a.subdomain == subdomain), None)
        if app is None:
            return _text(404, f"No application at {subdomain}.{DOMAIN_HOST} in this workspace.\n")
        if request.path == LOGIN_PATH:
            return await self._login(request)
        if not app.bypass_authentication and not self._authenticated(request):
            return self._unauthenticated(request)
        if app.status != RUNNING:
            status = app.status.removeprefix("APPLICATION_").lower()
            return _text(503, f"Application {app.name!r} is not running (it is {status}).\n")
        port = self.ws.supervisor.info(app.id).get("app_port")
        if not port:
            return _text(503, f"Application {app.name!r} is not running.\n")
        return await self._forward(request, app, int(port))

    # -- authentication ------------------------------------------------------------------

    def _keys(self) -> list[bytes]:
        # The workload key too: a session's CDSW_APIV2_KEY is what a printed curl line uses.
        return [self.ws.api_key.encode(), self.ws.workload_key.encode()]

    def _is_workspace_key(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not given:
            return False
        return any([hmac.compare_digest(given, key) for key in self._keys()])

    def _has_session(self, request: web.Request) -> bool:
        value = request.cookies.get(SESSION_COOKIE, "")
        return bool(value) and value in self._sessions

    def _authenticated(self, request: web.Request) -> bool:
        authorizations = request.headers.getall("Authorization", [])
        if any(self._is_workspace_key(value) for value in authorizations):
            return True
        return self._has_session(request)

    def _unauthenticated(self, request: web.Request) -> web.Response:
        login = f"http://{request.host}{LOGIN_PATH}"
        if "text/html" in request.headers.get("Accept", ""):
            return _login_page(401, request.path_qs, "")
        return _text(
            401,
            "Unauthenticated: log in to the local workspace. Send the workspace's API key as "
            f"`Authorization: Bearer <key>`, or log in from a browser at {login}.\n",
        )

    async def _login(self, request: web.Request) -> web.StreamResponse:
        """GET: the login form. POST `key=<API key>&next=<path>`: a session cookie for this
        host, then a redirect to `next` (a path on this host)."""
        if request.method == "GET":
            return _login_page(200, request.query.get("next", "/"), "")
        if request.method != "POST":
            return _text(405, "Use GET or POST.\n")
        form = await request.post()
        key = str(form.get("key", "")).strip()
        target = str(form.get("next", "/")) or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if not self._is_workspace_key(f"Bearer {key}"):
            return _login_page(401, target, "That is not this workspace's API key.")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = None
        while len(self._sessions) > MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax")
        return response

    # -- forwarding ----------------------------------------------------------------------

    def _client_session(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_SKIP_AUTO,
            )
        return self._client

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        # Expect: 100-continue was answered here; the body follows the request upstream.
        drop = _hop_by_hop(request.headers) | {"expect"}
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in drop:
                continue
            if lower == "authorization" and self._is_workspace_key(value):
                continue
            if lower == "cookie":
                value = _without_session_cookie(value)
                if not value:
                    continue
            headers.add(name, value)
        peer = request.remote or ""
        forwarded_for = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        return headers

    async def _forward(self, request: web.Request, app: AppRecord, port: int) -> web.StreamResponse:
        url = f"http://127.0.0.1:{port}{request.rel_url}"
        headers = self._upstream_headers(request)
        if _is_websocket(request):
            return await self._forward_websocket(request, app, url, headers)
        body = request.content if request.body_exists else None
        try:
            upstream = await self._client_session().request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.debug("ingress: %s did not answer: %r", app.name, exc)
            return _text(502, f"Application {app.name!r} is not answering on its port.\n")
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            drop = _hop_by_hop(upstream.headers)
            for name, value in upstream.headers.items():
                if name.lower() not in drop:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # The app broke off mid-response: the client must see a broken response too.
            log.debug("ingress: %s broke off: %r", app.name, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        finally:
            upstream.release()

    async def _forward_websocket(
        self, request: web.Request, app: AppRecord, url: str, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        protocols = [
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        ]
        extra = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _WS_HEADERS)
        try:
            upstream = await self._client_session().ws_connect(
                url, headers=extra, protocols=protocols, autoping=False
            )
        except aiohttp.WSServerHandshakeError as exc:
            return _text(exc.status or 502, f"Application {app.name!r} refused the WebSocket.\n")
        except (aiohttp.ClientError, OSError):
            return _text(502, f"Application {app.name!r} is not answering on its port.\n")
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), autoping=False
        )
        await downstream.prepare(request)
        try:
            await asyncio.gather(_pump(upstream, downstream), _pump(downstream, upstream))
        finally:
            await upstream.close()
            await downstream.close()
        return downstream


async def _pump(
    source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
    sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
) -> None:
    async for message in source:
        kind = message.type
        if kind == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif kind == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif kind == aiohttp.WSMsgType.PING:
            await sink.ping(message.data)
        elif kind == aiohttp.WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            break
    with contextlib.suppress(Exception):
        await sink.close()


def _is_websocket(request: web.Request) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    return request.method == "GET" and upgrade == "websocket"


def _without_session_cookie(header: str) -> str:
    """The Cookie header without the workspace's login cookie (the app's own cookies stay)."""
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if part.strip() and name != SESSION_COOKIE:
            kept.append(part.strip())
    return "; ".join(kept)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _login_page(status: int, target: str, error: str) -> web.Response:
    note = f"<p><strong>{html.escape(error)}</strong></p>" if error else ""
    body = (
        "<!doctype html><title>Log in: raycai local workspace</title>"
        "<h1>Log in to the local workspace</h1>"
        "<p>This application is behind the workspace's login, as on CML. Paste the "
        "workspace's API key (<code>raycai local env</code> prints it as CML_API_KEY).</p>"
        f"{note}<form method=post action={LOGIN_PATH}>"
        f'<input type=hidden name=next value="{html.escape(target)}">'
        '<input type=password name=key autofocus placeholder="API key"> '
        "<button>Log in</button></form>"
    )
    return web.Response(status=status, text=body, content_type="text/html")
