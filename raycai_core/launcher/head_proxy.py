"""raycai head proxy: the program behind the head application's port (CML's URL).

Copied by raycai into the cluster directory (raycai_head_proxy.py) and run by the head's
launcher with Ray's Python: the standard library only (uvloop when Ray's Python has it),
nothing of raycai. Requests under the Serve prefix (`/serve/hello` -> `/hello`) go to Ray
Serve's HTTP proxy on the head (it listens on loopback), every other request to the Ray
dashboard. Both ways stream: a token stream is forwarded as it arrives, never buffered.

One rule for the port: Ray's own public paths (the dashboard's page, its static files, the
browser login and the health checks) need nothing; every other path, the Serve prefix
included, needs the cluster's token in `X-Ray-Authorization: Bearer`, `Authorization: Bearer`
or the dashboard's `ray-authentication-token` cookie. The dashboard gets the token as
`Authorization: Bearer` (never the client's own Authorization, which may be a workspace
credential); Serve gets none of them. While an upstream refuses connections (Ray restarts)
the answer is 503 "Ray is not answering".

How: HTTP/1.1 at the level of bytes, on asyncio protocols. Each client connection gets its
own connection to each upstream; its requests are taken one at a time (a pipelined request
waits for the answer before it): the request head is parsed and checked, rewritten and sent,
its body and the answer are passed through as they arrive, parsed only as far as their
framing (where each message ends). Parsing is strict where a lenient parser would let a
request hide another one behind the token check (request smuggling): Content-Length with
Transfer-Encoding, differing Content-Lengths, a transfer coding other than chunked, folded
or malformed header lines, a bare CR or LF, a chunk size that is not plain hex: each is
answered 400 and the connection closed. A WebSocket upgrade accepted upstream (101) turns
the pair of connections into a tunnel. This is the hop every Serve request through CML's
URL pays, on the cores Serve's replicas use: aiohttp's server and client cost 0.6 ms of CPU
per request here, this 0.23 ms (bench/p13_head_proxy.py, P13).

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
from typing import cast
from urllib.parse import unquote, urlsplit

EXIT_SETUP = 2
COOKIE = b"ray-authentication-token"  # ray/_private/authentication/authentication_constants.py
BEARER = b"Bearer "
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
# Not forwarded (RFC 9110 7.6.1), plus what this proxy sets itself: the body's framing (set
# again from what was parsed), Host (the upstream's) and Expect (answered here).
DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"content-length",
        b"upgrade",
        b"host",
        b"expect",
        b"authorization",  # credentials: the client's are never passed on
        b"x-ray-authorization",
    }
)
DOT_SEGMENT = re.compile(r"(^|/)(\.|%2e){1,2}(/|$)", re.IGNORECASE)
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.([01])")
HEADER_NAME = re.compile(TOKEN)
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # in a header value (HTAB is allowed)
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: .*)?", re.DOTALL)
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\x20-\x7e\t]*)?")
MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024  # a chunk-size or trailer line
KEEP_ALIVE_S = 75.0  # an idle client connection is closed after this (as aiohttp does)
REUSE_S = 2.0  # an upstream connection idle longer is replaced (Serve's closes idle ones at 5 s)
CONNECT_S = 10.0
NOT_ANSWERING = "Ray is not answering ({what} at {url}); try again in a few seconds\n"


class BadMessage(Exception):
    """A request (or an answer) this proxy will not pass on: why, for the 400's text."""


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
    for url in (args.dashboard, args.serve):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            parser.error(f"{url}: an upstream is http://host:port")
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


def token_matches(token: bytes, offered: list[bytes]) -> bool:
    matched = False
    for candidate in offered:  # every candidate compared: time does not tell which one
        matched |= hmac.compare_digest(candidate, token)
    return matched


def strip_cookie(value: bytes) -> bytes:
    parts = [part.strip() for part in value.split(b";")]
    return b"; ".join(p for p in parts if p and p.split(b"=", 1)[0].strip() != COOKIE)


def cookie_token(value: bytes) -> bytes | None:
    for part in value.split(b";"):
        name, _, token = part.strip().partition(b"=")
        if name == COOKIE and token:
            return token.strip().strip(b'"')
    return None


class Request:
    """A parsed request head: headers as (lower-case name, name, value), in order."""

    __slots__ = ("chunked", "headers", "length", "method", "minor", "target")

    def __init__(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        line = REQUEST_LINE.fullmatch(lines[0])
        if line is None:
            raise BadMessage("a malformed request line")
        self.method, self.target, minor = line.groups()
        self.minor = int(minor)
        self.headers = []
        lengths, codings = [], []
        for text in lines[1:]:
            name, colon, value = text.partition(b":")
            if not colon or HEADER_NAME.fullmatch(name) is None:
                raise BadMessage("a malformed header line")
            value = value.strip(b" \t")
            if CONTROL.search(value):
                raise BadMessage("a control character in a header")
            lower = name.lower()
            if lower == b"content-length":
                lengths.append(value)
            elif lower == b"transfer-encoding":
                codings.append(value)
            self.headers.append((lower, name, value))
        hosts = sum(1 for lower, _, _ in self.headers if lower == b"host")
        if hosts > 1 or (hosts == 0 and self.minor == 1):
            raise BadMessage("no Host header, or more than one")  # RFC 9112 3.2
        self.length = 0
        self.chunked = False
        if codings:
            if lengths or self.minor == 0:
                raise BadMessage("Transfer-Encoding with Content-Length, or in HTTP/1.0")
            if b",".join(codings).strip().lower() != b"chunked":
                raise BadMessage("a transfer coding other than chunked")
            self.chunked = True
        elif lengths:
            if any(value != lengths[0] for value in lengths) or not (
                lengths[0].isdigit() and len(lengths[0]) <= 15
            ):
                raise BadMessage("a malformed or repeated Content-Length")
            self.length = int(lengths[0])

    def header(self, lower: bytes) -> bytes:
        for name, _, value in self.headers:
            if name == lower:
                return value
        return b""

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0

    def tokens(self) -> list[bytes]:
        """Every token the client offers (each place a client may put it)."""
        offered = []
        for lower, _, value in self.headers:
            if lower in (b"x-ray-authorization", b"authorization") and value.startswith(BEARER):
                offered.append(value[len(BEARER) :].strip())
            elif lower == b"cookie":
                token = cookie_token(value)
                if token:
                    offered.append(token)
        return offered

    def wants_close(self) -> bool:
        options = self.header(b"connection").lower()
        return self.minor == 0 or b"close" in options

    def is_websocket(self) -> bool:
        return (
            self.header(b"upgrade").lower() == b"websocket"
            and b"upgrade" in self.header(b"connection").lower()
        )


class Chunks:
    """Where a chunked body ends, fed the bytes as they come (a line may arrive in parts).
    Strict: lines end in CRLF, sizes are plain hex, trailer lines are header lines."""

    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self) -> None:
        self.state = self.SIZE
        self.remaining = 0
        self.line = bytearray()

    def feed(self, data: bytes | bytearray, pos: int) -> tuple[int, bool]:
        """Consumes from `pos`; (where it stopped, whether the body ended there)."""
        end = len(data)
        while pos < end:
            if self.state == self.DATA:
                take = min(self.remaining, end - pos)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self.DATA_END
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                self.line += data[pos:end]
                if len(self.line) > MAX_LINE:
                    raise BadMessage("a chunk line too long")
                return end, False
            self.line += data[pos : newline + 1]
            pos = newline + 1
            line = bytes(self.line)
            self.line.clear()
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                raise BadMessage("a bare CR or LF in a chunked body")
            line = line[:-2]
            if self.state == self.SIZE:
                size = CHUNK_SIZE.fullmatch(line)
                if size is None:
                    raise BadMessage("a malformed chunk size")
                self.remaining = int(size.group(1), 16)
                self.state = self.DATA if self.remaining else self.TRAILER
            elif self.state == self.DATA_END:
                if line:
                    raise BadMessage("a chunk longer than its size")
                self.state = self.SIZE
            elif not line:
                return pos, True
            else:
                name, colon, value = line.partition(b":")
                if not colon or HEADER_NAME.fullmatch(name) is None or CONTROL.search(value):
                    raise BadMessage("a malformed trailer")
        return pos, False


class Body:
    """Where a body of known framing ends: a length, chunks, or (answers only) the close."""

    def __init__(self, length: int = 0, chunked: bool = False, until_close: bool = False):
        self.remaining = length
        self.chunks = Chunks() if chunked else None
        self.until_close = until_close

    def feed(self, data: bytes | bytearray, pos: int) -> tuple[int, bool]:
        if self.chunks is not None:
            return self.chunks.feed(data, pos)
        if self.until_close:
            return len(data), False
        take = min(self.remaining, len(data) - pos)
        self.remaining -= take
        return pos + take, not self.remaining


class Answer:
    """An upstream's answer to one request, passed on as it arrives: its head is parsed for
    the framing (and interim 1xx answers let through); `feed` says where it ends."""

    def __init__(self, method: bytes) -> None:
        self.method = method
        self.head = bytearray()
        self.body: Body | None = None
        self.status = 0
        self.upgraded = False
        self.close = False
        self.started = False  # a byte of it went to the client

    def feed(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Consumes from `pos`; (where the answer ended, or the end of data; whether it did)."""
        while self.body is None:
            self.head += data[pos:]
            cut = self.head.find(b"\r\n\r\n")
            if cut < 0:
                if len(self.head) > MAX_HEAD:
                    raise BadMessage("an answer's head too long")
                return len(data), False
            head = bytes(self.head[:cut])
            pos = len(data) - (len(self.head) - cut - 4)  # where the head ends in data
            self.head = bytearray()
            if self.framing(head):
                return pos, True
        return self.body.feed(data, pos)

    def framing(self, head: bytes) -> bool:
        """Reads an answer's head; True when the answer ends with it."""
        lines = head.split(b"\r\n")
        status = STATUS_LINE.fullmatch(lines[0])
        if status is None:
            raise BadMessage("a malformed status line from upstream")
        self.status = int(status.group(1))
        if self.status == 101:
            self.upgraded = True
            return True
        if 100 <= self.status < 200:
            return False  # an interim answer: the real one follows
        length, chunked = None, False
        for text in lines[1:]:
            name, _, value = text.partition(b":")
            lower = name.strip().lower()
            if lower == b"content-length":
                if not value.strip().isdigit():
                    raise BadMessage("a malformed Content-Length from upstream")
                length = int(value.strip())
            elif lower == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif lower == b"connection":
                self.close = self.close or b"close" in value.lower()
        if self.method == b"HEAD" or self.status in (204, 304):
            self.body = Body()
            return True
        if chunked:
            self.body = Body(chunked=True)
        elif length is not None:
            self.body = Body(length)
            return length == 0
        else:
            self.body = Body(until_close=True)
            self.close = True
        return False


class Upstream(asyncio.Protocol):
    """One connection to an upstream, owned by one client connection."""

    transport: asyncio.Transport  # from connection_made, before any other call

    def __init__(self, client: ClientConnection, what: str, url: str) -> None:
        self.client = client
        self.what = what  # for the 503's text: "Serve" or "the Ray dashboard", its URL
        self.url = url
        self.answer: Answer | None = None
        self.idle_since = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP one

    def data_received(self, data: bytes) -> None:
        self.client.answer_received(self, data)

    def eof_received(self) -> bool:
        return False  # close

    def usable(self, now: float) -> bool:
        """For the next request: open, and idle for less than REUSE_S."""
        closing = self.lost or self.transport.is_closing()
        return not closing and now - self.idle_since < REUSE_S

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.client.upstream_lost(self)

    def pause_writing(self) -> None:
        self.client.pause("upstream full")

    def resume_writing(self) -> None:
        self.client.resume("upstream full")


class ClientConnection(asyncio.Protocol):
    """One client's connection: its requests, one at a time."""

    transport: asyncio.Transport  # from connection_made, before any other call

    HEAD, CONNECTING, BODY, WAIT, TUNNEL, CLOSED = range(6)

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_event_loop()
        self.buffer = bytearray()
        self.state = self.HEAD
        self.upstreams: dict[str, Upstream] = {}
        self.upstream: Upstream | None = None
        self.body: Body | None = None
        self.close_after = False
        self.paused: set[str] = set()
        self.peer = b""
        self.idle: asyncio.TimerHandle | None = None
        self.active = 0.0  # when a request last started or ended
        self.connecting: asyncio.Future[None] | None = None

    # -- the client's side --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP one
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.proxy.connections.add(self)
        self.active = self.loop.time()
        self.idle = self.loop.call_later(KEEP_ALIVE_S, self.idle_close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = self.CLOSED
        self.proxy.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        for upstream in self.upstreams.values():
            upstream.transport.close()
        self.upstreams.clear()

    def data_received(self, data: bytes) -> None:
        if self.state == self.TUNNEL and self.upstream is not None:
            self.upstream.transport.write(data)
            return
        self.buffer += data
        self.take_more()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()

    def pause(self, reason: str) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.paused:
            return
        self.paused.discard(reason)
        if not self.paused and self.state != self.CLOSED:
            self.transport.resume_reading()

    def idle_close(self) -> None:
        """Closes the connection once idle for KEEP_ALIVE_S (one timer, moved on when it
        fires early: a timer per request would cost more than the rest of a request)."""
        idle = self.loop.time() - self.active
        if idle < KEEP_ALIVE_S or self.state != self.HEAD or self.buffer:
            self.idle = self.loop.call_later(max(KEEP_ALIVE_S - idle, 1.0), self.idle_close)
        else:
            self.transport.close()

    def take_more(self) -> None:
        try:
            self.process()
        except BadMessage as exc:
            self.refuse(400, "Bad Request", f"Bad request: {exc}\n", close=True)

    def process(self) -> None:
        """Takes what the buffer holds: a request's head, then its body."""
        while self.state in (self.HEAD, self.BODY) and self.buffer:
            if self.state == self.HEAD:
                while self.buffer[:2] == b"\r\n":  # empty lines before a request (RFC 9112)
                    del self.buffer[:2]
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        self.refuse(431, "Request Header Fields Too Large", "", close=True)
                    return
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                self.start(Request(head))
                continue
            assert self.body is not None and self.upstream is not None
            used, done = self.body.feed(self.buffer, 0)
            if used:
                self.upstream.transport.write(bytes(self.buffer[:used]))
                del self.buffer[:used]
            if done:
                self.state = self.WAIT
        if self.state == self.WAIT and len(self.buffer) > MAX_HEAD:
            self.pause("answer")  # pipelined requests wait in the buffer, up to a bound

    # -- one request --

    def start(self, request: Request) -> None:
        self.active = self.loop.time()
        proxy = self.proxy
        target = request.target.decode("latin-1")
        serve = proxy.route(target)
        authorization = b""
        if proxy.token is not None:
            offered = request.tokens()
            valid = token_matches(proxy.token, offered)
            raw_path = target.split("?", 1)[0]
            if not valid and (serve is not None or not is_public(unquote(raw_path), target)):
                close = request.has_body
                head_only = request.method == b"HEAD"
                if offered:
                    text = "Forbidden: the Ray token is wrong\n"
                    self.refuse(403, "Forbidden", text, close, head_only=head_only)
                else:
                    self.refuse(
                        401,
                        "Unauthorized",
                        "Unauthorized: this path needs the cluster's Ray token "
                        "(X-Ray-Authorization: Bearer <token>)\n",
                        close,
                        head_only=head_only,
                    )
                return
            if valid and serve is None:
                authorization = BEARER + proxy.token
        if serve is None:
            name, address, path = "the Ray dashboard", proxy.dashboard, request.target
        else:
            name, address, path = "Serve", proxy.serve, serve.encode("latin-1")
        self.close_after = request.wants_close()
        head = self.upstream_head(request, path, address, authorization)
        if request.has_body and b"100-continue" in request.header(b"expect").lower():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.body = Body(request.length, request.chunked)
        upstream = self.upstreams.get(name)
        if upstream is not None:
            if upstream.usable(self.loop.time()):
                self.send(upstream, request, head)
                return
            self.drop(upstream)
        self.state = self.CONNECTING
        self.pause("connecting")
        self.connecting = asyncio.ensure_future(self.connect(name, address, request, head))

    def upstream_head(
        self, request: Request, path: bytes, address: tuple[str, int], authorization: bytes
    ) -> bytes:
        lines = [b"%s %s HTTP/1.%d" % (request.method, path, request.minor)]
        lines.append(b"Host: %s:%d" % (address[0].encode(), address[1]))
        forwarded_for = forwarded_proto = forwarded_host = b""
        for lower, name, value in request.headers:
            if lower in DROPPED:
                continue
            if lower == b"cookie":
                value = strip_cookie(value)
                if not value:
                    continue
            elif lower == b"x-forwarded-for":
                forwarded_for = value
                continue
            elif lower == b"x-forwarded-proto":
                forwarded_proto = value
                continue
            elif lower == b"x-forwarded-host":
                forwarded_host = value
                continue
            lines.append(name + b": " + value)
        if authorization:
            lines.append(b"Authorization: " + authorization)
        if self.peer:  # the chain so far (an ingress's), then this proxy's peer
            chain = forwarded_for + b", " + self.peer if forwarded_for else self.peer
            lines.append(b"X-Forwarded-For: " + chain)
        lines.append(b"X-Forwarded-Proto: " + (forwarded_proto or b"http"))
        host = forwarded_host or request.header(b"host")
        if host:
            lines.append(b"X-Forwarded-Host: " + host)
        if request.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        elif request.length or request.method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d" % request.length)
        if request.is_websocket():
            lines.append(b"Connection: Upgrade")
            lines.append(b"Upgrade: " + request.header(b"upgrade"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def connect(
        self, name: str, address: tuple[str, int], request: Request, head: bytes
    ) -> None:
        url = f"http://{address[0]}:{address[1]}"
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(lambda: Upstream(self, name, url), *address),
                CONNECT_S,
            )
        except (OSError, asyncio.TimeoutError):
            if self.state == self.CONNECTING:
                self.state = self.HEAD
                self.resume("connecting")
                self.refuse(
                    503,
                    "Service Unavailable",
                    NOT_ANSWERING.format(what=name, url=url),
                    close=request.has_body,
                    extra=b"Retry-After: 2\r\n",
                )
                self.take_more()
            return
        if self.state != self.CONNECTING:  # the client went away meanwhile
            upstream.transport.close()
            return
        self.upstreams[name] = upstream
        self.resume("connecting")
        self.send(upstream, request, head)
        self.take_more()

    def drop(self, upstream: Upstream) -> None:
        for name, known in list(self.upstreams.items()):
            if known is upstream:
                del self.upstreams[name]
        upstream.transport.close()

    def send(self, upstream: Upstream, request: Request, head: bytes) -> None:
        self.upstream = upstream
        upstream.answer = Answer(request.method)
        upstream.transport.write(head)
        self.state = self.BODY if request.has_body else self.WAIT

    # -- the answer --

    def answer_received(self, upstream: Upstream, data: bytes) -> None:
        if self.state == self.TUNNEL:
            self.transport.write(data)
            return
        answer = upstream.answer
        if answer is None or upstream is not self.upstream:
            self.drop(upstream)  # bytes nobody asked for
            return
        try:
            used, done = answer.feed(data, 0)
        except BadMessage:
            self.broken()
            return
        answer.started = True
        self.transport.write(data[:used] if used < len(data) else data)
        if not done:
            return
        upstream.answer = None
        if answer.upgraded:
            self.state = self.TUNNEL
            self.resume("answer")
            if self.buffer:
                upstream.transport.write(bytes(self.buffer))
                self.buffer.clear()
            if used < len(data):
                self.transport.write(data[used:])
            return
        upstream.idle_since = self.loop.time()
        if answer.close or used < len(data):  # closing, or more than one answer
            self.drop(upstream)
        if self.state == self.BODY or self.close_after:
            self.transport.close()  # answered before its body ended
            return
        self.state = self.HEAD
        self.upstream = None
        self.active = upstream.idle_since
        self.resume("answer")
        self.take_more()

    def upstream_lost(self, upstream: Upstream) -> None:
        self.drop(upstream)
        if upstream is not self.upstream or self.state == self.CLOSED:
            return
        answer = upstream.answer
        if self.state == self.TUNNEL or answer is None:
            self.transport.close()
            return
        if answer.body is not None and answer.body.until_close:
            self.transport.close()  # the answer's normal end
            return
        if not answer.started:
            self.upstream = None
            self.state = self.HEAD
            self.resume("answer")
            self.resume("upstream full")
            self.refuse(
                503,
                "Service Unavailable",
                NOT_ANSWERING.format(what=upstream.what, url=upstream.url),
                close=True,
                extra=b"Retry-After: 2\r\n",
            )
            return
        self.broken()

    def broken(self) -> None:
        """An answer broke off: so does the connection, not a clean end."""
        self.transport.close()

    def refuse(
        self,
        status: int,
        reason: str,
        text: str,
        close: bool = False,
        extra: bytes = b"",
        head_only: bool = False,
    ) -> None:
        if self.transport.is_closing():
            return
        body = text.encode()
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n%s%s\r\n"
            % (
                status,
                reason.encode(),
                len(body),
                extra,
                b"Connection: close\r\n" if close else b"",
            )
        )
        self.transport.write(head if head_only else head + body)
        if close:
            self.state = self.CLOSED
            self.transport.close()


class Proxy:
    def __init__(self, dashboard: str, serve: str, prefix: str, token: bytes | None) -> None:
        self.dashboard = self.address(dashboard)
        self.serve = self.address(serve)
        self.prefix = prefix
        self.token = token
        self.connections: set[ClientConnection] = set()

    @staticmethod
    def address(url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def route(self, target: str) -> str | None:
        """The path on Serve for a Serve route (`/serve/hello` -> `/hello`), or None."""
        path, sep, query = target.partition("?")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return (path[len(self.prefix) :] or "/") + sep + query
        return None


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where Ray's Python has it (ray[serve] brings it, with uvicorn[standard]): less
    of the proxy's own CPU per request, which Serve's replicas share the head's cores with
    (bench/p13_head_proxy.py); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(proxy: Proxy, host: str, port: int) -> None:
    loop = asyncio.get_event_loop()
    server = await loop.create_server(
        lambda: ClientConnection(proxy), host, port, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    for connection in list(proxy.connections):
        connection.transport.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"raycai head proxy: cannot read the cluster's token: {exc}\n")
        return EXIT_SETUP
    proxy = Proxy(args.dashboard, args.serve, args.prefix, token)
    sys.stdout.write(
        f"raycai head proxy on {args.host}:{args.port}: {args.prefix}/* -> {args.serve}, "
        f"the rest -> {args.dashboard}{'' if token else ' (no token: auth off)'}\n"
    )
    sys.stdout.flush()
    loop = event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(proxy, args.host, args.port))
    except OSError as exc:
        sys.stderr.write(f"raycai head proxy: cannot listen on {args.host}:{args.port}: {exc}\n")
        return EXIT_SETUP
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
