"""The head proxy program (raycai_core/launcher/head_proxy.py) as the launcher runs it, in its
own process, between a client and two stand-in upstreams on loopback: a "dashboard" and a
"Serve" that echo what reached them, and stream on /stream."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.patience import Deadline

pytestmark = pytest.mark.integration

PROGRAM = Path(__file__).parents[1] / "raycai_core" / "launcher" / "head_proxy.py"
TOKEN = "f00d" * 16
WORKSPACE_KEY = "workspace-api-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Upstream:
    """An HTTP server that answers every request with what it received (JSON), and on
    /stream sends a first chunk, then waits for `release` before the second one."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        # 0: the kernel's choice at the first start, kept for a restart (a port picked before
        # the bind could be taken meanwhile by a test on another xdist worker, as in CI).
        self.port = port
        self.release = threading.Event()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.connections: list[socket.socket] = []
        self.paths: list[str] = []  # every request's path, in order

    def start(self) -> None:
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                upstream.connections.append(self.connection)

            def do_GET(self) -> None:
                upstream.paths.append(self.path)
                if self.path.endswith("/stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._chunk(b"first ")
                    upstream.release.wait(30)
                    self._chunk(b"second")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding") == "chunked":
                    received = self._read_chunks()
                else:
                    received = self.rfile.read(length) if length else b""
                body = json.dumps(
                    {
                        "upstream": upstream.name,
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": received.decode(),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if self.path.endswith("/close"):  # this connection ends with the answer
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_POST = do_PUT = do_HEAD = do_GET

            def _read_chunks(self) -> bytes:
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b""):  # trailers
                    pass
                return data

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for connection in self.connections:  # kept-alive ones too: as if Ray went away
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.connections.clear()


class Running:
    def __init__(self, port: int, dashboard: Upstream, serve: Upstream) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.dashboard = dashboard
        self.serve = serve
        self.client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]


def start_proxy(
    tmp_path: Path, dashboard_port: int, serve_port: int
) -> tuple[subprocess.Popen, int]:
    """The program as the launcher starts it; returns once it answers."""
    token_file = tmp_path / "auth_token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "CDSW_APP_PORT": str(port), "RAYCAI_PROXY_HOST": "127.0.0.1"}
    process = subprocess.Popen(
        [
            sys.executable,
            str(PROGRAM),
            "--dashboard",
            f"http://127.0.0.1:{dashboard_port}",
            "--serve",
            f"http://127.0.0.1:{serve_port}",
            "--token-file",
            str(token_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = Deadline(30, every=0.1)
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return process, port
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert not deadline.passed(), "the proxy did not start"
        time.sleep(0.1)


def stop_proxy(process: subprocess.Popen) -> None:
    process.terminate()
    assert process.wait(10) == 0  # SIGTERM: a clean exit


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Running]:
    dashboard, serve = Upstream("dashboard"), Upstream("serve")
    dashboard.start()
    serve.start()
    process, port = start_proxy(tmp_path, dashboard.port, serve.port)
    running = Running(port, dashboard, serve)
    yield running
    running.client.close()
    stop_proxy(process)
    dashboard.release.set()
    serve.release.set()
    dashboard.stop()
    serve.stop()


def echo(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_public_paths_need_no_token_and_reach_the_dashboard(proxy: Running) -> None:
    for path in ("/", "/static/js/main.js", "/api/authentication_mode", "/api/gcs_healthz",
                 "/-/healthz", "/api/healthz"):  # fmt: skip
        seen = echo(proxy.get(path))
        assert seen["upstream"] == "dashboard" and seen["path"] == path
        assert "authorization" not in seen["headers"]
    # A dot segment does not make a private path public.
    assert proxy.get("/static/%2e%2e/api/jobs/").status_code == 401


def test_everything_else_needs_the_token(proxy: Running) -> None:
    for path in ("/serve/hello", "/serve", "/api/jobs/", "/api/v0/nodes"):
        response = proxy.get(path)
        assert response.status_code == 401, path
        assert "token" in response.text
    # The workspace credential alone is not the cluster's token.
    auth = {"Authorization": f"Bearer {WORKSPACE_KEY}"}
    assert proxy.get("/api/jobs/", headers=auth).status_code == 403
    assert (
        proxy.get("/serve/hello", headers={"X-Ray-Authorization": "Bearer wrong"}).status_code
        == 403
    )
    proxy.client.cookies.set("ray-authentication-token", "wrong")
    assert proxy.get("/api/jobs/").status_code == 403
    proxy.client.cookies.clear()


@pytest.mark.parametrize("form", ["x-ray-authorization", "authorization", "cookie"])
def test_each_token_form_is_accepted(proxy: Running, form: str) -> None:
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if form == "x-ray-authorization":
        # What a session sends: the workspace credential for CML's ingress, the token for Ray.
        headers = {
            "X-Ray-Authorization": f"Bearer {TOKEN}",
            "Authorization": f"Bearer {WORKSPACE_KEY}",
        }
    elif form == "authorization":
        headers = {"Authorization": f"Bearer {TOKEN}"}
    else:
        cookies = {"ray-authentication-token": TOKEN, "other": "kept"}
    proxy.client.cookies.clear()
    proxy.client.cookies.update(cookies)
    dashboard = echo(proxy.client.post("/api/jobs/", headers=headers, content=b"{}"))
    assert dashboard["upstream"] == "dashboard" and dashboard["path"] == "/api/jobs/"
    assert dashboard["method"] == "POST" and dashboard["body"] == "{}"
    assert dashboard["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "x-ray-authorization" not in dashboard["headers"]
    assert WORKSPACE_KEY not in json.dumps(dashboard)
    serve = echo(proxy.client.get("/serve/hello?x=1", headers=headers))
    assert serve["upstream"] == "serve" and serve["path"] == "/hello?x=1"
    assert "authorization" not in serve["headers"] and "x-ray-authorization" not in serve["headers"]
    assert TOKEN not in json.dumps(serve) and WORKSPACE_KEY not in json.dumps(serve)
    if form == "cookie":
        assert serve["headers"]["cookie"] == "other=kept"
    assert echo(proxy.get("/serve", headers=headers))["path"] == "/"
    # /servex is not under the prefix: the dashboard's.
    assert echo(proxy.get("/servex", headers=headers))["upstream"] == "dashboard"


@pytest.mark.parametrize("upstream", ["serve", "dashboard"])
def test_a_streamed_response_arrives_in_chunks_before_it_ends(
    proxy: Running, upstream: str
) -> None:
    path = "/serve/stream" if upstream == "serve" else "/api/v0/logs/stream"
    source = proxy.serve if upstream == "serve" else proxy.dashboard
    headers = {"X-Ray-Authorization": f"Bearer {TOKEN}"}
    with proxy.client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        # The upstream sends "second" only after this first chunk reached the client.
        assert next(chunks) == b"first "
        source.release.set()
        assert b"".join(chunks) == b"second"


def test_503_while_an_upstream_is_down_then_recovery(proxy: Running) -> None:
    headers = {"X-Ray-Authorization": f"Bearer {TOKEN}"}
    proxy.serve.stop()
    proxy.dashboard.stop()
    down = proxy.get("/serve/hello", headers=headers)
    assert down.status_code == 503 and "Ray is not answering" in down.text
    assert proxy.get("/").status_code == 503
    assert proxy.get("/serve/hello").status_code == 401  # the token rule first
    proxy.serve.start()
    proxy.dashboard.start()
    assert echo(proxy.get("/serve/hello", headers=headers))["upstream"] == "serve"
    assert echo(proxy.get("/"))["upstream"] == "dashboard"


class WebSocketDashboard:
    """A dashboard whose job log tail is a WebSocket (aiohttp, as Ray's): sends a line, then
    echoes what it receives; records the upgrade request's Authorization."""

    def __init__(self) -> None:
        self.port = free_port()
        self.authorization: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import web

        async def tail(request: web.Request) -> web.WebSocketResponse:
            self.authorization.append(request.headers.get("Authorization"))
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str("line 1")
            async for message in ws:
                await ws.send_str("echo " + message.data)
            return ws

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/api/jobs/j1/logs/tail", tail)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()


async def test_a_websocket_reaches_the_dashboard_with_the_token(tmp_path: Path) -> None:
    import aiohttp

    dashboard = WebSocketDashboard()
    process, port = await asyncio.to_thread(start_proxy, tmp_path, dashboard.port, free_port())
    url = f"http://127.0.0.1:{port}/api/jobs/j1/logs/tail"
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 401
            headers = {"X-Ray-Authorization": f"Bearer {TOKEN}"}
            async with session.ws_connect(url, headers=headers) as ws:
                assert (await ws.receive_str(timeout=10)) == "line 1"
                await ws.send_str("hello")
                assert (await ws.receive_str(timeout=10)) == "echo hello"
        assert dashboard.authorization == [f"Bearer {TOKEN}"]
    finally:
        stop_proxy(process)
        dashboard.loop.call_soon_threadsafe(dashboard.loop.stop)


# -- HTTP at the level of bytes: what a lenient parser would let through -------------------------


def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Sends `raw` on one connection; everything received until the proxy closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def port_of(proxy: Running) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


AUTH = f"X-Ray-Authorization: Bearer {TOKEN}\r\n".encode()
CHUNKED = b"POST /serve/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Content-Length beside Transfer-Encoding: the classic desync (CL.TE / TE.CL).
        b"POST /serve/a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /serve/a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /serve/a HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd",
        b"POST /serve/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /serve/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /serve/a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # A folded header, a space before the colon, a bare LF, a control character.
        b"GET /serve/a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        b"GET /serve/a HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET /serve/a HTTP/1.1\nHost: h\r\n\r\n",
        b"GET /serve/a HTTP/1.1\r\nHost: h\x00x\r\n\r\n",
        # Chunk sizes that are not plain hex, a chunk longer than its size, a bare LF.
        CHUNKED + b"0x4\r\nabcd\r\n0\r\n\r\n",
        CHUNKED + b"4 \r\nabcd\r\n0\r\n\r\n",
        CHUNKED + b"2\r\nabcd\r\n0\r\n\r\n",
        CHUNKED + b"4\nabcd\r\n0\r\n\r\n",
        # Not origin-form.
        b"GET http://h/serve/a HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
)
def test_an_ambiguous_request_is_refused_and_the_connection_closed(
    proxy: Running, request_bytes: bytes
) -> None:
    """Each would let a request hide another behind the token check on some parser; the
    token is valid here, so only the framing can refuse it. A request after it on the same
    connection reaches nothing."""
    head, _, rest = request_bytes.partition(b"\r\n")
    smuggled = b"GET /serve/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    answer = exchange(port_of(proxy), head + b"\r\n" + AUTH + rest + smuggled)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.count(b"HTTP/1.1") == 1
    # A bad head reaches nothing; a bad chunk is found after the head went (then cut off).
    assert proxy.serve.paths in ([], ["/a"]) and proxy.dashboard.paths == []


def test_pipelined_requests_are_checked_one_by_one_and_answered_in_order(proxy: Running) -> None:
    port = port_of(proxy)
    answer = exchange(
        port,
        b"GET /serve/one HTTP/1.1\r\nHost: h\r\n" + AUTH + b"\r\n"
        b"GET /serve/two HTTP/1.1\r\nHost: h\r\n\r\n"  # no token
        b"POST /api/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n" + AUTH + b"\r\n{}"
        b"GET /serve/four HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" + AUTH + b"\r\n",
    )
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", answer)
    assert statuses == [b"200", b"401", b"200", b"200"]
    assert answer.index(b'"/one"') < answer.index(b"Unauthorized") < answer.index(b'"/four"')
    assert proxy.serve.paths == ["/one", "/four"]
    assert proxy.dashboard.paths == ["/api/jobs/"]


def test_bodies_pass_chunked_or_by_length_with_100_continue_and_head(proxy: Running) -> None:
    port = port_of(proxy)
    answer = exchange(
        port,
        b"POST /serve/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
        + AUTH
        + b"\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
        b"PUT /serve/up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
        b"Expect: 100-continue\r\n" + AUTH + b"\r\nxyz"
        b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",  # 1.0: the connection ends after it
    )
    assert b'"body": "abcde"' in answer and b'"method": "POST"' in answer
    assert b"HTTP/1.1 100 Continue\r\n\r\n" in answer
    assert b'"body": "xyz"' in answer and b'"method": "PUT"' in answer
    assert answer.count(b"HTTP/1.1 200 ") == 4 and answer.count(b'"upstream"') == 3
    assert proxy.serve.paths == ["/up", "/up"] and proxy.dashboard.paths == ["/", "/"]


def test_a_connection_idle_past_the_upstreams_keep_alive_still_works(proxy: Running) -> None:
    headers = {"X-Ray-Authorization": f"Bearer {TOKEN}"}
    assert echo(proxy.get("/serve/a", headers=headers))["path"] == "/a"
    time.sleep(2.5)  # the proxy opens a new upstream connection after 2 s idle
    assert echo(proxy.get("/serve/b", headers=headers))["path"] == "/b"


def test_an_upstream_closing_after_its_answer_is_replaced_for_the_next(proxy: Running) -> None:
    headers = {"X-Ray-Authorization": f"Bearer {TOKEN}"}
    for path in ("/close", "/a", "/close", "/close", "/b"):  # one client connection
        assert echo(proxy.get("/serve" + path, headers=headers))["path"] == path
    assert proxy.serve.paths == ["/close", "/a", "/close", "/close", "/b"]
