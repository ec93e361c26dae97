"""One TLS context per process, shared by every HTTP client raycai makes.

httpx builds a new context for each client unless given one, and building one loads the CA
bundle: about 40 ms of CPU per client, measured here (0.3 ms with a shared context). raycai
makes clients often: each CLI command, each observer, each Ray dashboard client of a poll.
The context is httpx's own default (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
