"""The head proxy's request framing against h11's (httpx's HTTP/1.1 parser), on generated
requests: whenever the proxy accepts a request, h11 accepts it too and ends its body at the
same byte, so no request can hide inside another's body past the token check. The proxy may
refuse more than h11 does, never less."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import h11
import pytest

PROGRAM = Path(__file__).parents[1] / "raycai_core" / "launcher" / "head_proxy.py"
NEXT = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
REQUEST_LINES = [b"POST /x HTTP/1.1", b"GET /x HTTP/1.1", b"POST /x HTTP/1.0"]
HEADERS = [
    b"Content-Length: 4", b"Content-Length: 04", b"Content-Length: 4 ", b"Content-Length:4",
    b"Content-Length: +4", b"Content-Length: 4, 4", b"content-length: 4", b"Content-Length: 5",
    b"Content-Length: 0", b"Content-Length: -1", b"Content-Length: 0x4",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked", b"Transfer-Encoding: chunked ",
    b"Transfer-Encoding:\tchunked", b"Transfer-Encoding: identity",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: chunked\x0b", b"X-A: b", b"X-A: b\tc", b"X-A:", b"Host: h", b"Host: h",
    b" X: folded", b"\tX: folded", b"X-A : b", b"X-\xff: b", b"X-A: \xff", b"X-A: a\rb",
    b"Connection: close", b"Expect: 100-continue",
]  # fmt: skip
BODIES = [
    b"", b"abcd", b"abcde", b"4\r\nabcd\r\n0\r\n\r\n", b"4;x=1\r\nabcd\r\n0\r\n\r\n",
    b"0\r\n\r\n", b"4\r\nabcd\r\n0\r\nT: v\r\n\r\n", b"04\r\nabcd\r\n0\r\n\r\n",
    b"4\r\nabcdX\r\n0\r\n\r\n", b"4 \r\nabcd\r\n0\r\n\r\n", b"4\nabcd\r\n0\r\n\r\n",
    b"0x4\r\nabcd\r\n0\r\n\r\n", b"-4\r\nabcd\r\n0\r\n\r\n",
    b"4\r\nabcd\r\n0\r\n\r\nGET /h HTTP/1.1\r\n\r\n",
]  # fmt: skip


@pytest.fixture(scope="module")
def proxy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("raycai_head_proxy", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(proxy: ModuleType, head: bytes, after: bytes) -> int | None:
    """Where the proxy ends the body in `after`; None when it refuses the request."""
    try:
        request = proxy.Request(head)
        used, done = proxy.Body(request.length, request.chunked).feed(after, 0)
    except proxy.BadMessage:
        return None
    assert done, (head, after)  # every generated body is complete
    return used


def h11s(head: bytes, after: bytes) -> int | None:
    """Where h11 ends the body in `after`; None when it refuses the request."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(head + b"\r\n\r\n" + after)
    try:
        assert isinstance(connection.next_event(), h11.Request)
        while not isinstance(event := connection.next_event(), h11.EndOfMessage):
            assert event is not h11.NEED_DATA, (head, after)
    except h11.RemoteProtocolError:
        return None
    return len(after) - len(connection.trailing_data[0])


@pytest.mark.parametrize("seed", range(4))
def test_whatever_the_proxy_accepts_h11_frames_the_same(proxy: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    accepted = 0
    for _ in range(3000):
        lines = [rng.choice(REQUEST_LINES), *rng.choices(HEADERS, k=rng.randint(0, 4))]
        if not any(line.lower().startswith(b"host") for line in lines) and rng.random() < 0.9:
            lines.append(b"Host: h")
        head, after = b"\r\n".join(lines), rng.choice(BODIES) + NEXT
        mine = ours(proxy, head, after)
        if mine is None:
            continue  # refusing is always safe
        accepted += 1
        assert h11s(head, after) == mine, (head, after)
    assert accepted > 300  # the generator reaches the accepting side often
