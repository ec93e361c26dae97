"""One exception family for every way a call to a Ray head's dashboard can fail.

Every failure is a `RayDashboardError`: `RayDashboardUnreachable` (nothing answered, or a log
stream was cut), `RayDashboardAuthError` (401 no token / 403 wrong token),
`RayDashboardServerError` (5xx; Ray answers log errors with a 500 and a plain-text reason),
`JobNotFound` (404 on a job), `JobRefused` (400 on a job request) and `ServeNotInstalled`
(501: the head's Ray lacks `ray[serve]`). No message ever contains the cluster's token.
"""

from __future__ import annotations


class UnexpectedAnswer(ValueError):
    """The JSON does not have the shape the Ray 2.60 dashboard sends (raised by parsers)."""


class RayDashboardError(Exception):
    """A dashboard call failed. `status` is the HTTP status, or None when none arrived."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        operation: str = "",
        status: int | None = None,
        server_message: str = "",
    ) -> None:
        self.url = url
        self.operation = operation
        self.status = status
        self.server_message = server_message
        super().__init__(message)


class RayDashboardUnreachable(RayDashboardError):
    """No answer: connection refused or reset, DNS failure, or a timeout."""


class RayLogStreamLost(RayDashboardUnreachable):
    """A followed log stream was cut: its node, its dashboard agent or the head stopped."""


class RayDashboardAuthError(RayDashboardError):
    """The dashboard refused the request: 401 (no token sent) or 403 (wrong token)."""


class RayDashboardServerError(RayDashboardError):
    """The dashboard answered 5xx; `server_message` holds Ray's plain-text reason."""


class JobNotFound(RayDashboardError):
    """The cluster has no job with that id."""


class JobRefused(RayDashboardError):
    """Ray refused the job request (400); `server_message` holds its reason."""


class ServeNotInstalled(RayDashboardError):
    """The head's Ray lacks Serve's dependencies (`ray[serve]`): the API answers 501."""
