"""Injected faults and the request counter, both for `/api/v2` only.

Faults, in order: latency (plus jitter), a dropped connection before the request is
handled (`drop_rate`), an error status chosen by `error_rates`, and a lost response after
the request was handled (`lost_response_rate`: the change happened, the client never
hears of it). Random draws come from one generator seeded by `seed`. With `routes`, only
requests to those routes (`METHOD /template`, as the stats count them) get faults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from raycai_core.local.errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FAULT_MESSAGES = {
    400: "injected fault: invalid argument",
    429: "injected fault: too many requests",
    500: "injected fault: internal error",
    503: "injected fault: service unavailable",
    504: "injected fault: deadline exceeded",
}


@dataclass(frozen=True)
class FaultConfig:
    """`error_rates` maps an HTTP status to the fraction of requests that get it."""

    latency_s: float = 0.0
    jitter_s: float = 0.0
    error_rates: dict[int, float] = field(default_factory=dict)
    drop_rate: float = 0.0
    lost_response_rate: float = 0.0
    retry_after_s: int = 1  # Retry-After on injected 429s; 0 sends none
    seed: int | None = None
    routes: tuple[str, ...] = ()  # e.g. "POST /api/v2/projects/{project_id}/applications"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        """From the `PUT /_local/faults` body; ValueError names what is wrong."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        rates = values.get("error_rates") or {}
        if not isinstance(rates, dict):
            raise ValueError("error_rates must be an object of status -> rate")
        try:
            values["error_rates"] = {int(k): float(v) for k, v in rates.items()}
        except (TypeError, ValueError):
            raise ValueError("error_rates must map HTTP statuses to numbers") from None
        routes = values.get("routes", ())
        if not isinstance(routes, list | tuple) or not all(isinstance(r, str) for r in routes):
            raise ValueError('routes must be a list of "METHOD /route/template" strings')
        values["routes"] = tuple(routes)
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        for name in ("latency_s", "jitter_s", "drop_rate", "lost_response_rate", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
        for status, rate in self.error_rates.items():
            if not 400 <= status <= 599:
                raise ValueError(f"error_rates: {status} is not an HTTP error status")
            if not 0 <= rate <= 1:
                raise ValueError(f"error_rates: the rate for {status} must be within 0..1")
        if sum(self.error_rates.values()) + self.drop_rate > 1:
            raise ValueError("error_rates and drop_rate add up to more than 1")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_rates"] = {str(k): v for k, v in self.error_rates.items()}
        data["routes"] = list(self.routes)
        return data


class RequestStats:
    """Counts of `/api/v2` requests: total, per `METHOD /route/template`, per outcome."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.since = time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "injected": dict(self.injected),
            "since": self.since,
        }


def route_key(request: web.Request) -> str:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else "<unmatched>"
    return f"{request.method} {template}"


class FaultInjector:
    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats
        self.config = FaultConfig()
        self._random = random.Random()

    def set(self, config: FaultConfig) -> None:
        config.check()
        self.config = config
        self._random = random.Random(config.seed)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/v2/"):
            return await handler(request)
        stats = self.stats
        stats.total += 1
        stats.by_route[route_key(request)] += 1
        response = await self._apply(request, handler)
        stats.by_status[str(response.status)] += 1
        return response

    async def _apply(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config, draw, stats = self.config, self._random.random, self.stats
        if config.routes and route_key(request) not in config.routes:
            return await handler(request)
        delay = config.latency_s + (draw() * config.jitter_s if config.jitter_s else 0.0)
        if delay > 0:
            stats.injected["latency"] += 1
            await asyncio.sleep(delay)
        if config.drop_rate or config.error_rates:
            roll = draw()
            if roll < config.drop_rate:
                stats.injected["dropped"] += 1
                return _drop(request)
            threshold = config.drop_rate
            for status, rate in sorted(config.error_rates.items()):
                threshold += rate
                if roll < threshold:
                    stats.injected[str(status)] += 1
                    headers = None
                    if status == 429 and config.retry_after_s:
                        headers = {"Retry-After": str(config.retry_after_s)}
                    message = _FAULT_MESSAGES.get(status, f"injected fault: HTTP {status}")
                    return error_response(status, message, headers)
        response = await handler(request)
        if config.lost_response_rate and draw() < config.lost_response_rate:
            stats.injected["lost"] += 1
            return _drop(request)
        return response


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without a response; the response returned is never sent."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)
