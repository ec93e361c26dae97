"""The local workspace's application URLs (`http://<subdomain>.localhost:<port>/`), as
CML's ingress: routing by Host, the login (key or cookie), bypass_authentication, what is
forwarded, streaming both ways, and the API untouched on the plain host. No Ray."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from raycai_core.cml.client import CMLClient
from raycai_core.credentials import app_url, normalise_host
from raycai_core.local import WorkspaceHandle
from raycai_core.local.ingress import SESSION_COOKIE, app_subdomain
from raycai_core.work.access import head_app_url
from tests.fixtures.workspace import new_app, wait_for

pytestmark = pytest.mark.timeout(60)

# Echoes each request (method, path, headers as pairs) as JSON; `GET /stream` sends a
# first chunk, then waits for `GET /release` before the second; `POST /upload` reads a
# chunked body, writing the bytes received so far to upload-progress after each chunk.
ECHO_APP = """\
import http.server, json, os, threading

release = threading.Event()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else ~40 ms per kept-alive request behind any proxy

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(data), data))
        self.wfile.flush()

    def _echo(self, extra=None):
        record = {"method": self.command, "path": self.path,
                  "headers": [[k, v] for k, v in self.headers.items()], **(extra or {})}
        self._send(200, json.dumps(record).encode())

    def do_GET(self):
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"first\\n")
            release.wait(30)
            self._chunk(b"second\\n")
            self._chunk(b"")
        elif self.path == "/release":
            release.set()
            self._send(200, b"{}")
        else:
            self._echo()

    def do_POST(self):
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                break
            total += len(self.rfile.read(size))
            self.rfile.readline()
            with open("upload-progress.tmp", "w") as handle:
                handle.write(str(total))
            os.replace("upload-progress.tmp", "upload-progress")
        self._echo({"received": total})

    def log_message(self, *args):
        pass

port = int(os.environ["CDSW_APP_PORT"])
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


async def _running_app(
    handle: WorkspaceHandle, client: CMLClient, subdomain: str, **fields: object
) -> str:
    (handle.project_dir / "echo.py").write_text(ECHO_APP)
    app = await client.create_application(new_app(subdomain, subdomain, "echo.py", **fields))

    async def running() -> bool:
        return (await client.get_application(app.id)).status.value == "running"

    await wait_for(running, 20)
    return app.id


def _port(handle: WorkspaceHandle) -> int:
    return int(handle.url.rsplit(":", 1)[1])


@pytest.fixture
async def raw(local_workspace: WorkspaceHandle) -> AsyncIterator[httpx.AsyncClient]:
    """A client on 127.0.0.1:<port> with no credentials; each test sets Host itself."""
    async with httpx.AsyncClient(base_url=local_workspace.url, timeout=20.0) as client:
        yield client


def _host(handle: WorkspaceHandle, subdomain: str) -> dict[str, str]:
    return {"Host": f"{subdomain}.localhost:{_port(handle)}"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _headers_seen(response: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_app_subdomain_from_host() -> None:
    assert app_subdomain("ray-demo-1a2b3c-h.localhost:8080") == "ray-demo-1a2b3c-h"
    assert app_subdomain("Web.LOCALHOST") == "web"
    for host in ("localhost:8080", "127.0.0.1:8080", ".localhost:1", "example.com", "[::1]:80"):
        assert app_subdomain(host) is None


def test_app_url_of_local_and_cml_workspaces() -> None:
    assert app_url("http://127.0.0.1:8123", "web") == "http://web.localhost:8123"
    assert app_url("localhost:8123", "web") == "http://web.localhost:8123"  # CDSW_DOMAIN
    assert app_url("https://ml-1.example.com", "web") == "https://web.ml-1.example.com"
    assert app_url("ml-1.example.com", "web") == "https://web.ml-1.example.com"
    assert normalise_host("localhost:8123") == "http://localhost:8123"  # CDSW_DOMAIN, locally
    assert normalise_host("ml-1.example.com") == "https://ml-1.example.com"
    head = head_app_url("127.0.0.1:8123", "abcd-1234", "demo")  # what `raycai dashboard` prints
    assert head.startswith("http://ray-demo-") and head.endswith("-h.localhost:8123")


async def test_key_login_cookie_and_what_is_forwarded(local_workspace, cml_client, raw) -> None:
    await _running_app(local_workspace, cml_client, "web")
    host = _host(local_workspace, "web")

    anonymous = await raw.get("/page?x=1", headers=host)
    assert anonymous.status_code == 401 and "log in" in anonymous.text
    assert "text/plain" in anonymous.headers["content-type"]
    browser = await raw.get("/", headers={**host, "Accept": "text/html"})
    assert browser.status_code == 401 and "<form" in browser.text
    wrong = await raw.get("/", headers={**host, **_bearer("not-the-key")})
    assert wrong.status_code == 401

    # The user's key, then the workload key (a session's CDSW_APIV2_KEY): neither forwarded,
    # while the app's own Ray token passes in X-Ray-Authorization.
    for key in (local_workspace.api_key, local_workspace.workload_key):
        response = await raw.get(
            "/page?x=1",
            headers={**host, **_bearer(key), "X-Ray-Authorization": "Bearer ray-token"},
        )
        assert response.status_code == 200
        assert (response.json()["method"], response.json()["path"]) == ("GET", "/page?x=1")
        seen = _headers_seen(response)
        assert "authorization" not in seen
        assert seen["x-ray-authorization"] == ["Bearer ray-token"]
        assert seen["host"] == [host["Host"]]
        assert seen["x-forwarded-host"] == [host["Host"]]

    # Two Authorization headers: the workspace key is dropped, the app's own token passes.
    both = await raw.get(
        "/",
        headers=httpx.Headers(
            [
                ("Host", host["Host"]),
                ("Authorization", f"Bearer {local_workspace.api_key}"),
                ("Authorization", "Bearer app-token"),
            ]
        ),
    )
    assert both.status_code == 200
    assert _headers_seen(both)["authorization"] == ["Bearer app-token"]

    # A browser's login: the form posts the key, gets a cookie for this host.
    refused = await raw.post("/_local/login", headers=host, data={"key": "nope", "next": "/after"})
    assert refused.status_code == 401 and SESSION_COOKIE not in refused.cookies
    login = await raw.post(
        "/_local/login", headers=host, data={"key": local_workspace.api_key, "next": "/after"}
    )
    assert login.status_code == 303 and login.headers["location"] == "/after"
    session = login.cookies[SESSION_COOKIE]
    assert local_workspace.api_key not in login.headers["set-cookie"]
    raw.cookies.clear()
    cookie = {"Cookie": f"theirs=1; {SESSION_COOKIE}={session}"}
    with_cookie = await raw.get("/after", headers={**host, **cookie})
    assert with_cookie.status_code == 200
    assert _headers_seen(with_cookie)["cookie"] == ["theirs=1"]  # the login cookie stays here
    forged = await raw.get("/", headers={**host, "Cookie": f"{SESSION_COOKIE}=forged"})
    assert forged.status_code == 401


async def test_bypass_authentication_needs_no_credentials(local_workspace, cml_client, raw):
    await _running_app(local_workspace, cml_client, "public", bypass_authentication=True)
    response = await raw.get("/hello", headers=_host(local_workspace, "public"))
    assert response.status_code == 200 and response.json()["path"] == "/hello"


async def test_streams_both_ways(local_workspace, cml_client, raw) -> None:
    await _running_app(local_workspace, cml_client, "stream")
    headers = {**_host(local_workspace, "stream"), **_bearer(local_workspace.api_key)}

    # The app sends its first chunk, then waits to be released: a buffering proxy would
    # hold the first chunk until the app ends, and the read below would never return.
    async with raw.stream("GET", "/stream", headers=headers) as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), 15)
        assert first == b"first\n"
        released = await raw.get("/release", headers=headers)
        assert released.status_code == 200
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"second\n"

    # The request body too: the app must have received the first part before the rest
    # is sent.
    progress = Path(local_workspace.project_dir) / "upload-progress"

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await wait_for(lambda: progress.exists() and progress.read_text() == "1000", 15)
        yield b"b" * 200_000

    upload = await raw.post("/upload", headers=headers, content=body())
    assert upload.status_code == 200
    assert upload.json()["received"] == 201_000


async def test_unknown_stopped_and_the_api_beside(local_workspace, cml_client, raw) -> None:
    app_id = await _running_app(local_workspace, cml_client, "stoppable")
    key = _bearer(local_workspace.api_key)
    local_workspace.reset_stats()

    unknown = await raw.get("/", headers={**_host(local_workspace, "nobody"), **key})
    assert unknown.status_code == 404 and "nobody" in unknown.text
    # An application host is never the API, whatever the path.
    shadow = await raw.get(
        "/api/v2/projects", headers={**_host(local_workspace, "stoppable"), **key}
    )
    assert shadow.status_code == 200 and shadow.json()["path"] == "/api/v2/projects"
    assert local_workspace.stats()["total"] == 0  # ingress requests are not API calls

    api = await raw.get("/api/v2/projects", headers=key)
    assert api.status_code == 200 and "projects" in api.json()
    assert (await raw.get("/api/v2/projects")).status_code == 401
    assert local_workspace.stats()["total"] == 2

    await cml_client.stop_application(app_id)

    async def stopped() -> bool:
        return (await cml_client.get_application(app_id)).status.value == "stopped"

    await wait_for(stopped, 20)
    down = await raw.get("/", headers={**_host(local_workspace, "stoppable"), **key})
    assert down.status_code == 503 and "not running" in down.text


async def test_apps_get_the_localhost_domain(local_workspace, cml_client) -> None:
    app_id = await _running_app(local_workspace, cml_client, "domain")
    pid = local_workspace.app_info(app_id)["pid"]
    environ = (await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)).split(b"\0")
    values = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    domain = f"localhost:{_port(local_workspace)}"
    assert values["CDSW_DOMAIN"] == local_workspace.workspace.domain == domain
    assert app_url(values["CDSW_DOMAIN"], "domain") == f"http://domain.{domain}"


# An aiohttp app (the workspace's interpreter has aiohttp) that echoes WebSocket messages
# with the Authorization header it saw.
WEBSOCKET_APP = """\
import os
from aiohttp import web

async def socket(request):
    ws = web.WebSocketResponse(protocols=("chat",))
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(f"echo {message.data} {request.headers.get('Authorization', '-')}")
    return ws

async def root(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_get("/", root)
app.router.add_get("/ws", socket)
web.run_app(app, host="127.0.0.1", port=int(os.environ["CDSW_APP_PORT"]), print=None)
"""


async def test_websocket_passes_through(local_workspace, cml_client) -> None:
    (local_workspace.project_dir / "ws.py").write_text(WEBSOCKET_APP)
    app = await cml_client.create_application(new_app("sockets", "sockets", "ws.py"))

    async def running() -> bool:
        return (await cml_client.get_application(app.id)).status.value == "running"

    await wait_for(running, 20)
    url = f"{local_workspace.url}/ws"
    host = _host(local_workspace, "sockets")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers=host)
        assert refused.value.status == 401
        headers = {**host, **_bearer(local_workspace.api_key)}
        async with session.ws_connect(url, headers=headers, protocols=("chat",)) as ws:
            assert ws.protocol == "chat"
            for text in ("hello", "again"):
                await ws.send_str(text)
                assert await ws.receive_str(timeout=10) == f"echo {text} -"


# Answers the readiness poll once, then closes its port and keeps running.
CLOSES_PORT_APP = """\
import http.server, os, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(os.environ["CDSW_APP_PORT"])), Handler)
server.handle_request()
server.server_close()
while True:
    time.sleep(1)
"""


async def test_running_app_with_nothing_on_its_port_is_502(local_workspace, cml_client, raw):
    (local_workspace.project_dir / "closes.py").write_text(CLOSES_PORT_APP)
    app = await cml_client.create_application(new_app("closes", "closes", "closes.py"))

    async def running() -> bool:
        return (await cml_client.get_application(app.id)).status.value == "running"

    await wait_for(running, 20)
    headers = {**_host(local_workspace, "closes"), **_bearer(local_workspace.api_key)}
    response = await raw.get("/", headers=headers)
    assert response.status_code == 502 and "not answering" in response.text
