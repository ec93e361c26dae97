"""raycai head proxy: the program behind the head application's port (CML's URL).

Copied by raycai into the cluster directory (raycai_head_proxy.py) and run by the head's
launcher with Ray's Python, whose ray[default] brings aiohttp; standard library otherwise, and
nothing of raycai. Requests under the Serve prefix (`/serve/hello` -> `/hello`) go to Ray
Serve's HTTP proxy on the head (it listens on loopback), every other request to the Ray
dashboard. Both ways stream: a token stream is forwarded chunk by chunk, never buffered.

One rule for the port: Ray's own public paths (the dashboard's page, its static files, the
browser login and the health checks) need nothing; every other path, the Serve prefix
included, needs the cluster's token in `X-Ray-Authorization: Bearer`, `Authorization: Bearer`
or the dashboard's `ray-authentication-token` cookie. The dashboard gets the token as
`Authorization: Bearer` (never the client's own Authorization, which may be a workspace
credential); Serve gets none of them. While an upstream refuses connections (Ray restarts)
the answer is 503 "Ray is not answering".

Exit codes: 2 bad arguments, a token file that cannot be read or a port that cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import re
import signal
import sys

from aiohttp import (
    ClientResponse,
    ClientSession,
    ClientTimeout,
    DummyCookieJar,
    TCPConnector,
    WSMsgType,
    client_exceptions,
    web,
)

EXIT_SETUP = 2
COOKIE = "ray-authentication-token"  # ray/_private/authentication/authentication_constants.py
BEARER = "Bearer "
# Ray 2.60's public dashboard paths (ray/dashboard/http_server_head.py).
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/favicon.ico",
        "/api/authentication_mode",
        "/api/authenticate",
        "/api/healthz",
        "/api/gcs_healthz",
        "/api/local_raylet_healthz",
        "/-/healthz",
    }
)
PUBLIC_PREFIXES = ("/static/",)
# Not forwarded either way (RFC 9110 7.6.1), plus what this proxy sets itself.
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
        "host",
        "expect",  # this server answers `100-continue` itself
    }
)
TOKEN_HEADERS = frozenset({"authorization", "x-ray-authorization"})
DOT_SEGMENT = re.compile(r"(^|/)(\.|%2e){1,2}(/|$)", re.IGNORECASE)
CHUNK = 64 * 1024
SMALL_BODY = 256 * 1024  # answers up to this size of known length go in one write
NOT_ANSWERING = "Ray is not answering ({what} at {url}); try again in a few seconds\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="raycai_head_proxy.py", description=__doc__)
    parser.add_argument("--dashboard", required=True, help="the dashboard's URL (http://ip:port)")
    parser.add_argument("--serve", required=True, help="Serve's proxy URL (http://127.0.0.1:port)")
    parser.add_argument("--prefix", default="/serve", help="Serve's routes under this path")
    parser.add_argument("--token-file", default="", help="the cluster's token (none: no auth)")
    parser.add_argument("--host", default=os.environ.get("RAYCAI_PROXY_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CDSW_APP_PORT") or 0))
    args = parser.parse_args(argv)
    prefix = "/" + args.prefix.strip("/")
    if prefix == "/" or not 0 < args.port < 65536:
        parser.error("--prefix must name a path below / and the port ($CDSW_APP_PORT) be set")
    args.prefix = prefix
    return args


def read_token(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        token = handle.read().strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def is_public(path: str, raw_path: str) -> bool:
    """Ray's own public paths; a path with dot segments is never public (`/static/../x`)."""
    if DOT_SEGMENT.search(raw_path.split("?", 1)[0]):
        return False
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def offered_tokens(request: web.BaseRequest) -> list[bytes]:
    """Every token the client offers (each place a client may put it)."""
    offered = []
    for name in ("X-Ray-Authorization", "Authorization"):
        value = request.headers.get(name, "")
        if value.startswith(BEARER):
            offered.append(value[len(BEARER) :].strip().encode("utf-8", "replace"))
    cookie = request.cookies.get(COOKIE)
    if cookie:
        offered.append(cookie.strip().encode("utf-8", "replace"))
    return offered


def token_matches(token: bytes, offered: list[bytes]) -> bool:
    matched = False
    for candidate in offered:  # every candidate compared: time does not tell which one
        matched |= hmac.compare_digest(candidate, token)
    return matched


def forwarded_headers(request: web.BaseRequest, authorization: str | None) -> dict[str, str]:
    """The client's headers minus hop-by-hop ones and every credential; then ours."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in TOKEN_HEADERS:
            continue
        if lower == "cookie":
            value = strip_cookie(value)
            if not value:
                continue
        if lower in (key.lower() for key in headers):
            headers[name] += ", " + value
        else:
            headers[name] = value
    if authorization:
        headers["Authorization"] = authorization
    peer = request.remote or ""
    if peer:
        headers["X-Forwarded-For"] = peer
    headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
    if request.host:
        headers["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
    return headers


def strip_cookie(value: str) -> str:
    parts = [part.strip() for part in value.split(";")]
    return "; ".join(p for p in parts if p and p.split("=", 1)[0].strip() != COOKIE)


class Proxy:
    def __init__(self, dashboard: str, serve: str, prefix: str, token: bytes | None) -> None:
        self.dashboard = dashboard.rstrip("/")
        self.serve = serve.rstrip("/")
        self.prefix = prefix
        self.token = token
        self.session: ClientSession | None = None

    async def start(self, app: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=0, force_close=False),
            timeout=ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,  # bytes pass as they are, Content-Encoding with them
            cookie_jar=DummyCookieJar(),  # cookies belong to the clients, not to the proxy
        )

    async def close(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def route(self, raw_path: str) -> tuple[str, str, str] | None:
        """(upstream name, base URL, path) for a Serve route, or None for the dashboard."""
        path, sep, query = raw_path.partition("?")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            rest = path[len(self.prefix) :] or "/"
            return "Serve", self.serve, rest + sep + query
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        serve = self.route(request.raw_path)
        authorization = None
        if self.token is not None:
            offered = offered_tokens(request)
            valid = token_matches(self.token, offered)
            if not valid and (serve is not None or not is_public(request.path, request.raw_path)):
                if offered:
                    return web.Response(status=403, text="Forbidden: the Ray token is wrong\n")
                return web.Response(
                    status=401,
                    text="Unauthorized: this path needs the cluster's Ray token "
                    "(X-Ray-Authorization: Bearer <token>)\n",
                )
            if valid and serve is None:
                authorization = BEARER + self.token.decode("utf-8", "replace")
        if serve is None:
            what, base, path = "the Ray dashboard", self.dashboard, request.raw_path
        else:
            what, base, path = serve
        headers = forwarded_headers(request, authorization)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request, base + path, headers, what)
        return await self.forward(request, base + path, headers, what)

    async def forward(
        self, request: web.Request, url: str, headers: dict[str, str], what: str
    ) -> web.StreamResponse:
        assert self.session is not None
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        try:
            upstream = await self.session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (client_exceptions.ClientConnectorError, client_exceptions.ServerDisconnectedError):
            return not_answering(what, url)
        try:
            length = upstream.headers.get("Content-Length", "")
            small = length.isdigit() and int(length) <= SMALL_BODY
            if small and request.method != "HEAD" and upstream.status not in (204, 304):
                # A small answer of known length (a model's JSON, most dashboard calls): read
                # whole and sent in one write, the cheaper path per request at saturation.
                return await self.small(request, upstream)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            bodiless = request.method == "HEAD" or upstream.status in (204, 304)
            chunked = "Content-Length" not in upstream.headers and request.version >= (1, 1)
            if chunked and not bodiless:
                response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():  # as it arrives, unbuffered
                    await response.write(chunk)
            except client_exceptions.ClientPayloadError:
                # The upstream broke off (Ray restarted): so does this response, not a clean end.
                if request.transport is not None:
                    request.transport.close()
                return response
            except ConnectionResetError:
                return response  # the client went away (a stream it stopped reading)
            await response.write_eof()
            return response
        finally:
            upstream.release()

    async def small(self, request: web.Request, upstream: ClientResponse) -> web.StreamResponse:
        try:
            body = await upstream.read()
        except client_exceptions.ClientPayloadError:
            if request.transport is not None:
                request.transport.close()  # the upstream broke off: so does this answer
            return web.Response(status=502)
        response = web.Response(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                response.headers.add(name, value)
        response.body = body
        return response

    async def websocket(
        self, request: web.Request, url: str, headers: dict[str, str], what: str
    ) -> web.StreamResponse:
        assert self.session is not None
        for name in list(headers):
            if name.lower().startswith("sec-websocket-"):
                del headers[name]
        try:
            upstream = await self.session.ws_connect(url, headers=headers, autoping=False)
        except client_exceptions.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=f"{exc.message}\n")
        except client_exceptions.ClientConnectorError:
            return not_answering(what, url)
        client = web.WebSocketResponse(autoping=False)
        await client.prepare(request)

        async def pump(source, sink) -> None:  # either side's socket
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                elif message.type == WSMsgType.PING:
                    await sink.ping(message.data)
                elif message.type == WSMsgType.PONG:
                    await sink.pong(message.data)
                else:
                    break
            await sink.close()

        tasks = [
            asyncio.ensure_future(pump(client, upstream)),
            asyncio.ensure_future(pump(upstream, client)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()
            await client.close()
        return client


def not_answering(what: str, url: str) -> web.Response:
    base = url.split("/", 3)
    return web.Response(
        status=503,
        text=NOT_ANSWERING.format(what=what, url="/".join(base[:3])),
        headers={"Retry-After": "2"},
    )


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where Ray's Python has it (ray[serve] brings it, with uvicorn[standard]): less
    of the proxy's own CPU per request, which Serve's replicas share the head's cores with
    (bench/p13_head_proxy.py); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"raycai head proxy: cannot read the cluster's token: {exc}\n")
        return EXIT_SETUP
    proxy = Proxy(args.dashboard, args.serve, args.prefix, token)
    app = web.Application()  # bodies stream through (client_max_size bounds read() only)
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.close)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    sys.stdout.write(
        f"raycai head proxy on {args.host}:{args.port}: {args.prefix}/* -> {args.serve}, "
        f"the rest -> {args.dashboard}{'' if token else ' (no token: auth off)'}\n"
    )
    sys.stdout.flush()
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            access_log=None,
            print=None,
            handle_signals=True,
            reuse_address=True,
            loop=event_loop(),
        )
    except OSError as exc:
        sys.stderr.write(f"raycai head proxy: cannot listen on {args.host}:{args.port}: {exc}\n")
        return EXIT_SETUP
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
