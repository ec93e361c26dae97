"""grpc-gateway error bodies: `{code, message, error, details}` with the mapped HTTP status."""

from __future__ import annotations

from aiohttp import web

from raycai_core.cml.errors import HTTP_TO_GRPC


class ApiError(Exception):
    """Raised by handlers; rendered by `error_response`. Messages never contain the key."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "error": message,
        "code": HTTP_TO_GRPC.get(status, 2),
        "message": message,
        "details": [],
    }
    return web.json_response(body, status=status, headers=headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
