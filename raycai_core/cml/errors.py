"""One exception family for every way a CML API call can fail.

Each error carries the HTTP status, the gRPC code and the server's message, and a human
sentence for the statuses users meet most. No error text ever contains the API key: the
client builds messages from the server's body and the request's method and path only.
"""

from __future__ import annotations

# grpc-gateway's mapping from HTTP statuses to gRPC codes.
HTTP_TO_GRPC: dict[int, int] = {
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    409: 6,
    429: 8,
    499: 1,
    500: 13,
    501: 12,
    503: 14,
    504: 4,
}

_HINTS: dict[int, str] = {
    401: "the API key was refused (expired, revoked or mistyped); create a new API v2 key "
    "in CML under User Settings > API Keys and set CML_API_KEY",
    403: "the key's user may not do this in this project (ask a project admin for "
    "Contributor access)",
    404: "not found (check the project id and that the application still exists)",
    409: "already exists (an application subdomain must be unique in the whole workspace)",
    429: "the workspace is rate-limiting requests; retry in a moment",
}


class CMLError(Exception):
    """A CML API call failed.

    Attributes: `status` (HTTP status, or None when no response arrived), `grpc_code`,
    `server_message` (what the server said), `operation` (e.g. "POST /projects/x/applications"),
    `retry_after` (the server's Retry-After, seconds), `retries` (how the retries ended).
    """

    def __init__(
        self,
        server_message: str,
        *,
        status: int | None = None,
        grpc_code: int | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.grpc_code = grpc_code if grpc_code is not None else HTTP_TO_GRPC.get(status or 0)
        self.server_message = server_message
        self.operation = operation
        self.retry_after: float | None = None
        self.retries = ""
        super().__init__(self._describe())

    def gave_up(self, why: str) -> None:
        """The client's retries ended on this error: say how in the message."""
        self.retries = why
        self.args = (self._describe(),)

    @property
    def hint(self) -> str | None:
        return _HINTS.get(self.status or 0)

    def _describe(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        status = f"HTTP {self.status}" if self.status else "no response"
        parts = [f"{where}{status}"]
        if self.hint:
            parts.append(self.hint)
        if self.server_message:
            parts.append(f"server said: {self.server_message}")
        if self.retries:
            parts.append(self.retries)
        return " - ".join(parts)

    @property
    def retryable(self) -> bool:
        return False


class CMLBadRequest(CMLError):
    """400: the request was invalid."""


class CMLAuthError(CMLError):
    """401: the API key was refused."""


class CMLPermissionDenied(CMLError):
    """403: the key's user may not do this."""


class CMLNotFound(CMLError):
    """404."""


class CMLConflict(CMLError):
    """409: e.g. the subdomain is already in use in the workspace."""


class CMLRateLimited(CMLError):
    """429."""

    @property
    def retryable(self) -> bool:
        return True


class CMLServerError(CMLError):
    """5xx."""

    @property
    def retryable(self) -> bool:
        return True


class CMLConnectionError(CMLError):
    """No response: connection refused or dropped, DNS failure, or a timeout."""

    @property
    def retryable(self) -> bool:
        return True


_BY_STATUS: dict[int, type[CMLError]] = {
    400: CMLBadRequest,
    401: CMLAuthError,
    403: CMLPermissionDenied,
    404: CMLNotFound,
    409: CMLConflict,
    429: CMLRateLimited,
}


def error_for_status(
    status: int, server_message: str, grpc_code: int | None = None, operation: str = ""
) -> CMLError:
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = CMLServerError if status >= 500 else CMLError
    return cls(server_message, status=status, grpc_code=grpc_code, operation=operation)


def message_from_body(body: object, fallback: str) -> tuple[str, int | None]:
    """The server's message and gRPC code from a grpc-gateway error body.

    Any field may be missing: read `message`, then `error`, then `code`.
    """
    if isinstance(body, dict):
        code = body.get("code")
        grpc_code = code if isinstance(code, int) else None
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip(), grpc_code
        if grpc_code is not None:
            return f"gRPC code {grpc_code}", grpc_code
    return fallback, None
