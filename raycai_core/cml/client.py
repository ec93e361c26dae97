"""Async client for the CML API v2 (the same REST API that cmlapi wraps), on httpx.

Every call is retried by one policy (RetryPolicy) on 429, 5xx and connection errors:
exponential backoff with jitter, never sooner than the server's Retry-After, and no attempt
past an overall deadline. A create is never retried blindly: after a failure that may have
reached the server, the client first looks the subdomain up and returns the application
if it was in fact created.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from raycai_core.cml.errors import (
    CMLConflict,
    CMLConnectionError,
    CMLError,
    CMLNotFound,
    error_for_status,
    message_from_body,
)
from raycai_core.cml.models import Application, CreateApplication, KeyInfo, Project, Runtime
from raycai_core.credentials import Credentials
from raycai_core.tls import tls_context

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` tries; between two, a random wait of up to `initial_wait` doubled
    after each try (at most `max_wait`), but never less than the server's Retry-After; no
    try starts later than `deadline` seconds after the first (the call then gives up)."""

    attempts: int = 6
    initial_wait: float = 0.2
    max_wait: float = 5.0
    deadline: float = 60.0

    def wait(self, attempt: int, retry_after: float | None, draw: float) -> float:
        """Seconds to wait after try number `attempt` failed; `draw` is uniform in [0, 1)."""
        backoff = draw * min(self.max_wait, self.initial_wait * 2 ** (attempt - 1))
        if retry_after is not None and retry_after > 0:
            return max(backoff, retry_after)  # the server's word: never sooner
        return backoff


DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, CMLError) and exc.retryable


class CMLClient:
    """One workspace, one project. Use as `async with CMLClient(creds) as cml: ...`."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=credentials.api_base,
            headers={
                "Authorization": f"Bearer {credentials.api_key.reveal()}",
                "Accept": "application/json",
                "User-Agent": "raycai",
            },
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            verify=tls_context(),
        )

    @property
    def project_id(self) -> str:
        return self.credentials.project_id

    def __repr__(self) -> str:
        return f"CMLClient(host={self.credentials.host!r}, project_id={self.project_id!r})"

    async def __aenter__(self) -> CMLClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport -------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        response = await self._send(method, path, params=params, json_body=json_body)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CMLConnectionError(
                "the response was not JSON (a proxy or login page?)",
                operation=f"{method} {path}",
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> httpx.Response:
        """One try: the 200 response, or the CMLError its status or failure means."""
        operation = f"{method} {path}"
        try:
            response = await self._http.request(
                method, path, params=params, json=json_body, files=files
            )
        except httpx.TimeoutException as exc:
            raise CMLConnectionError(
                f"timed out ({type(exc).__name__})", operation=operation
            ) from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise CMLConnectionError(reason, operation=operation) from None
        if response.status_code == 200:
            return response
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        fallback = response.text.strip()[:200] if body is None else response.reason_phrase
        message, grpc_code = message_from_body(body, fallback or response.reason_phrase)
        error = error_for_status(response.status_code, message, grpc_code, operation)
        error.retry_after = _retry_after(response)
        raise error

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` under the client's RetryPolicy; the error that ends the retries says
        how many tries were made and why they stopped."""
        policy = self.retry

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = exc.retry_after if isinstance(exc, CMLError) else None
            return policy.wait(state.attempt_number, hinted, random.random())

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "retrying in %.2f s after %s (try %d)",
                state.upcoming_sleep,
                exc,
                state.attempt_number,
            )

        def give_up(state: RetryCallState) -> NoReturn:
            exc = state.outcome.exception() if state.outcome else None
            assert exc is not None
            if isinstance(exc, CMLError) and policy.attempts > 1:
                exc.gave_up(_why_given_up(policy, state, exc))
            raise exc

        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.deadline),
            wait=wait,
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _safe(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self._with_retries(lambda: self._request(method, path, **kwargs))

    async def raw(
        self,
        method: str,
        path: str,
        *,
        files: dict[str, tuple[str, bytes]] | None = None,
        retry: bool = True,
    ) -> bytes:
        """A call whose answer is not JSON (a file's bytes) or whose body is multipart (an
        upload); `retry=False`: one try, for a call whose retry could do it twice."""

        async def once() -> bytes:
            return (await self._send(method, path, files=files)).content

        return await self._with_retries(once) if retry else await once()

    def _apps_path(self, app_id: str | None = None) -> str:
        base = f"/projects/{self.project_id}/applications"
        return base if app_id is None else f"{base}/{app_id}"

    # -- applications --------------------------------------------------------------------

    async def list_applications(
        self,
        search_filter: dict[str, str] | None = None,
        sort: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> list[Application]:
        """Every application matching the filter, across all pages."""
        apps: list[Application] = []
        async for page in self._pages(
            self._apps_path(), "applications", search_filter, sort, page_size
        ):
            # 1,000 applications take tens of ms to validate: not on a UI's event loop.
            apps.extend(await asyncio.to_thread(_applications, page))
        return apps

    async def _pages(
        self,
        path: str,
        key: str,
        search_filter: dict[str, str] | None,
        sort: str | None,
        page_size: int,
    ):  # type: ignore[no-untyped-def]
        params: dict[str, Any] = {"page_size": page_size}
        if search_filter:
            params["search_filter"] = json.dumps(search_filter, separators=(",", ":"))
        if sort:
            params["sort"] = sort
        seen_tokens: set[str] = set()
        while True:
            body = await self._safe("GET", path, params=dict(params))
            yield body.get(key) or []
            token = body.get("next_page_token") or ""
            if not token or token in seen_tokens:
                return
            seen_tokens.add(token)
            params["page_token"] = token

    async def get_application(self, app_id: str) -> Application:
        return Application.model_validate(await self._safe("GET", self._apps_path(app_id)))

    async def create_application(self, request: CreateApplication) -> Application:
        """Create (and start) an application; never creates a duplicate on retry.

        Retried by the client's policy like every call. A try that failed in a way that may
        have reached the server (no response, 429, 5xx) first looks the subdomain up and
        returns the application if that try did create it; a 409 whose subdomain belongs to
        an application of this project with the same name and script is success too.
        """
        body = request.to_body(self.project_id)
        path = self._apps_path()

        async def attempt() -> Application:
            try:
                return Application.model_validate(await self._request("POST", path, json_body=body))
            except CMLError as exc:
                if not (exc.retryable or isinstance(exc, CMLConflict)):
                    raise
                existing = await self._existing(request)
                if existing is not None:
                    return existing
                raise

        return await self._with_retries(attempt)

    async def _existing(self, request: CreateApplication) -> Application | None:
        """The application an earlier try of this request created, if any. One look-up, not
        retried on its own: its failure fails the try, and the create's retries cover it."""
        search = json.dumps({"subdomain": request.subdomain}, separators=(",", ":"))
        params = {"page_size": LIST_PAGE_SIZE, "search_filter": search}
        body = await self._request("GET", self._apps_path(), params=params)
        # The filter matches substrings; a subdomain is unique in the workspace.
        for item in body.get("applications") or []:
            app = Application.model_validate(item)
            if (app.subdomain, app.name, app.script) == (
                request.subdomain,
                request.name,
                request.script,
            ):
                return app
        return None

    async def update_application(self, app_id: str, **fields: Any) -> Application:
        body = dict(fields)
        if isinstance(body.get("environment"), dict):
            body["environment"] = json.dumps(body["environment"])
        return Application.model_validate(
            await self._safe("PATCH", self._apps_path(app_id), json_body=body)
        )

    async def delete_application(self, app_id: str, *, missing_ok: bool = True) -> None:
        """Delete an application. A retry that finds it gone (404) counts as done."""
        try:
            await self._safe("DELETE", self._apps_path(app_id))
        except CMLNotFound:
            if not missing_ok:
                raise

    async def stop_application(self, app_id: str) -> Application:
        return Application.model_validate(
            await self._safe("POST", self._apps_path(app_id) + ":stop")
        )

    async def restart_application(self, app_id: str) -> Application:
        """Restart a running application, or start a stopped or failed one."""
        return Application.model_validate(
            await self._safe("POST", self._apps_path(app_id) + ":restart")
        )

    # -- runtimes, projects, auth --------------------------------------------------------

    async def list_runtimes(self, search_filter: dict[str, str] | None = None) -> list[Runtime]:
        runtimes: list[Runtime] = []
        async for page in self._pages("/runtimes", "runtimes", search_filter, None, 500):
            runtimes.extend(Runtime.model_validate(item) for item in page)
        return runtimes

    async def get_project(self, project_id: str | None = None) -> Project:
        body = await self._safe("GET", f"/projects/{project_id or self.project_id}")
        return Project.model_validate(body)

    async def update_project(self, project_id: str | None = None, **fields: Any) -> Project:
        """PATCH the project's fields, e.g. `shared_memory_limit=40000` (MB). The Swagger
        lists it as UpdateProject on /projects/{project.id}; ray-serve-cai's AMP uses it on a
        real workspace to set shared_memory_limit, which applies to engines started later."""
        body = await self._safe(
            "PATCH", f"/projects/{project_id or self.project_id}", json_body=dict(fields)
        )
        return Project.model_validate(body)

    async def validate_key(self) -> KeyInfo:
        body = await self._safe("POST", "/auth/validate_key", json_body={"audience": "API"})
        return KeyInfo.model_validate(body)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _why_given_up(policy: RetryPolicy, state: RetryCallState, error: CMLError) -> str:
    tries = state.attempt_number
    elapsed = state.seconds_since_start or 0.0
    said = f"gave up after {tries} tr{'y' if tries == 1 else 'ies'} in {elapsed:.1f} s"
    if tries >= policy.attempts:
        return f"{said} (at most {policy.attempts})"
    if error.retry_after and elapsed + error.retry_after >= policy.deadline:
        return (
            f"{said}: the server asked to retry in {error.retry_after:g} s, past the "
            f"{policy.deadline:g} s deadline"
        )
    return f"{said}: the next try would start past the {policy.deadline:g} s deadline"


def _applications(items: list[Any]) -> list[Application]:
    return [Application.model_validate(item) for item in items]
