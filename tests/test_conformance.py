"""Every request the client sends and every response the workspace returns, checked against
the real CML Swagger 2.0 definitions with jsonschema. Objects get `additionalProperties:
false` so that no field outside the spec slips through; formats are checked strictly."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest

from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.errors import CMLConflict, CMLNotFound
from tests.fixtures.workspace import new_app, wait_for, write_app

pytestmark = pytest.mark.timeout(60)

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def date_time(value: object) -> bool:
        return not isinstance(value, str) or bool(RFC3339_UTC.match(value))

    @checker.checks("int64")
    def int64(value: object) -> bool:  # the spec types int64 fields as strings
        return not isinstance(value, str) or bool(re.fullmatch(r"-?\d+", value))

    @checker.checks("int32")
    def int32(value: object) -> bool:
        return not isinstance(value, int) or -(2**31) <= value < 2**31

    return checker


def strict_definitions(spec: dict[str, Any]) -> dict[str, Any]:
    definitions = copy.deepcopy(spec["definitions"])
    for definition in definitions.values():
        if definition.get("type") == "object" and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return definitions


@dataclass
class Exchange:
    method: str
    path: str
    request_body: bytes
    status: int
    response_body: bytes
    source: str


class Recorder(httpx.AsyncBaseTransport):
    """An httpx transport that keeps every request and response it carries."""

    def __init__(self, source: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []
        self.source = source

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        self.exchanges.append(
            Exchange(
                request.method, request.url.path, body, response.status_code, content, self.source
            )
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class SpecChecker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.definitions = strict_definitions(spec)
        self.checker = _format_checker()
        self.operations: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for template, methods in spec["paths"].items():
            pattern = ""
            for piece in re.split(r"(\{[^}]+\})", template):
                if piece == "{path}":
                    pattern += ".*"
                elif piece.startswith("{"):
                    pattern += "[^/]+"
                else:
                    pattern += re.escape(piece)
            for method, operation in methods.items():
                self.operations.append((method.upper(), re.compile(f"^{pattern}$"), operation))
        self.seen: set[str] = set()

    def operation(self, method: str, path: str) -> dict[str, Any]:
        found = [op for m, regex, op in self.operations if m == method and regex.match(path)]
        assert len(found) == 1, f"{method} {path} matches {len(found)} spec operations"
        return found[0]

    def validate(self, instance: Any, schema: dict[str, Any], where: str) -> None:
        full = {**schema, "definitions": self.definitions}
        validator = jsonschema.Draft4Validator(full, format_checker=self.checker)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{where}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
        )

    def check(self, exchange: Exchange) -> None:
        path = exchange.path
        operation = self.operation(exchange.method, path)
        self.seen.add(operation["operationId"])
        where = f"{exchange.method} {path} -> {exchange.status}"
        body_params = [p for p in operation.get("parameters", []) if p["in"] == "body"]
        # Every body the client sends must conform; the raw calls below include bad ones.
        sent_by_client = exchange.source == "client" or exchange.status == 200
        if body_params and exchange.request_body and sent_by_client:
            self.validate(json.loads(exchange.request_body), body_params[0]["schema"], where)
        responses = operation["responses"]
        if exchange.status == 200:
            schema = responses["200"].get("schema")
            if schema is not None:
                self.validate(json.loads(exchange.response_body), schema, where)
        else:
            body = json.loads(exchange.response_body)
            self.validate(body, {"$ref": "#/definitions/runtimeError"}, where)
            assert isinstance(body.get("code"), int) and body.get("message"), where


async def test_everything_on_the_wire_matches_the_spec(cml_spec, local_workspace):
    ws = local_workspace
    spec = SpecChecker(cml_spec)
    recorder, raw_recorder = Recorder("client"), Recorder("raw")
    retry = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)
    script = write_app(ws.project_dir, "serve")

    async with CMLClient(ws.credentials(), transport=recorder, retry=retry) as client:
        assert (await client.validate_key()).valid
        await client.list_runtimes()
        await client.get_project()
        app = await client.create_application(
            new_app("c-1", "c-1", script, environment={"K": "v"}, description="d", cpu=0.5)
        )
        await client.create_application(new_app("c-2", "", "missing.py"))
        with pytest.raises(CMLConflict):
            await client.create_application(new_app("c-3", "c-1", "other.py"))

        async def running() -> bool:
            return (await client.get_application(app.id)).status.value == "running"

        await wait_for(running)
        await client.list_applications({"name": "c-"}, sort="-created_at", page_size=1)
        await client.update_application(app.id, environment={"K": "w"}, memory=2.0)
        await client.stop_application(app.id)
        await client.restart_application(app.id)
        await client.delete_application(app.id)
        with pytest.raises(CMLNotFound):
            await client.get_application(app.id)

    headers = {"Authorization": f"Bearer {ws.api_key}"}
    async with httpx.AsyncClient(
        base_url=f"{ws.url}/api/v2", headers=headers, transport=raw_recorder
    ) as raw:
        project = await raw.post("/projects", json={"name": "p2", "environment": {"A": "1"}})
        project_id = project.json()["id"]
        await raw.get("/projects", params={"page_size": 1})
        await raw.get(f"/projects/{project_id}")
        await raw.patch(f"/projects/{project_id}", json={"description": "x"})
        await raw.get("/runtimeaddons")
        files = f"/projects/{ws.project_id}/files"
        await raw.post(files, files={"d/f.txt": ("f.txt", b"data")})
        await raw.get(f"{files}/d")
        await raw.post(f"{files}/d/f.txt:download")
        await raw.patch(f"{files}/d/f.txt", json={"path": "d/g.txt"})
        await raw.delete(f"{files}/d/g.txt")
        await raw.delete(f"/projects/{project_id}")
        apps = f"/projects/{ws.project_id}/applications"
        await raw.get(apps, params={"search_filter": "[1]"})
        await raw.post(apps, json={"name": "x", "unknown": 1})
        await raw.get(f"/projects/{ws.project_id}/applications/none")
        await raw.get("/projects", headers={"Authorization": "Bearer nope"})

    # Every call above reached the recorders (the client's count depends on polling).
    assert len(raw_recorder.exchanges) == 15
    assert len(recorder.exchanges) >= 13
    exchanges = recorder.exchanges + raw_recorder.exchanges
    for exchange in exchanges:
        spec.check(exchange)
    statuses = {e.status for e in exchanges}
    assert {200, 400, 401, 404, 409} <= statuses
    every = {op["operationId"] for _, _, op in spec.operations}
    assert spec.seen == every, f"not exercised: {sorted(every - spec.seen)}"


async def test_strict_schema_catches_a_bad_shape(cml_spec):
    """The checker itself: an object environment or an int64 number would be refused."""
    spec = SpecChecker(cml_spec)
    app = {"id": "a", "environment": {"K": "v"}}
    with pytest.raises(AssertionError, match="environment"):
        spec.validate(app, {"$ref": "#/definitions/Application"}, "app")
    with pytest.raises(AssertionError, match="accelerator_label_id"):
        spec.validate({"accelerator_label_id": 5}, {"$ref": "#/definitions/Application"}, "a")
    with pytest.raises(AssertionError, match="url"):
        spec.validate({"url": "x"}, {"$ref": "#/definitions/Application"}, "app")
    with pytest.raises(AssertionError, match="created_at"):
        spec.validate({"created_at": "2024-01-01 10:00"}, {"$ref": "#/definitions/Application"}, "")
