"""The application status in one function, and the models' shapes."""

from __future__ import annotations

import json

import pytest

from raycai_core.cml.errors import CMLConflict, error_for_status, message_from_body
from raycai_core.cml.models import Application, AppStatus, CreateApplication, normalise_status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("APPLICATION_RUNNING", AppStatus.RUNNING),
        ("running", AppStatus.RUNNING),
        (" Running ", AppStatus.RUNNING),
        ("application_starting", AppStatus.STARTING),
        ("APPLICATION_STOPPING", AppStatus.STOPPING),
        ("stopped", AppStatus.STOPPED),
        ("APPLICATION_FAILED", AppStatus.FAILED),
        ("APPLICATION_UNKNOWN", AppStatus.UNKNOWN),
        ("APPLICATION_SOMETHING_NEW", AppStatus.UNKNOWN),
        ("", AppStatus.UNKNOWN),
        (None, AppStatus.UNKNOWN),
        (3, AppStatus.UNKNOWN),
        (AppStatus.FAILED, AppStatus.FAILED),
    ],
)
def test_every_spelling_of_a_status_normalises(raw: object, expected: AppStatus) -> None:
    assert normalise_status(raw) is expected


def test_status_spellings_round_trip() -> None:
    for status in AppStatus:
        assert normalise_status(f"APPLICATION_{status.name}") is status  # the spec's enum
        assert normalise_status(status.value) is status  # a search_filter's spelling


def test_application_environment_is_parsed_from_its_json_string() -> None:
    app = Application.model_validate(
        {
            "id": "a",
            "status": "APPLICATION_RUNNING",
            "environment": json.dumps({"A": "1"}),
            "created_at": "2026-11-26T06:00:00.123456Z",
            "nvidia_gpu": None,
        }
    )
    assert app.environment == {"A": "1"} and app.status is AppStatus.RUNNING
    assert app.created_at is not None and app.created_at.year == 2026 and app.nvidia_gpu == 0
    for broken in ("not json", "[1, 2]", "", None):
        assert Application.model_validate({"id": "b", "environment": broken}).environment == {}


def test_create_request_sends_the_environment_as_an_object() -> None:
    body = CreateApplication(
        name="n", subdomain="s", script="x.py", environment={"K": "V"}
    ).to_body("p")
    assert body["environment"] == {"K": "V"} and body["project_id"] == "p"
    assert body["bypass_authentication"] is False
    assert "runtime_addon_identifiers" not in body


def test_error_bodies_read_message_then_error_then_code() -> None:
    assert message_from_body({"code": 6, "message": "taken", "error": "e"}, "f") == ("taken", 6)
    assert message_from_body({"error": "only error"}, "f") == ("only error", None)
    assert message_from_body({"code": 7}, "f") == ("gRPC code 7", 7)
    assert message_from_body("not a dict", "fallback") == ("fallback", None)
    error = error_for_status(409, "subdomain taken", 6, "POST /x")
    assert isinstance(error, CMLConflict) and error.grpc_code == 6
    assert "unique in the whole workspace" in str(error) and "subdomain taken" in str(error)
