"""Typed views of the CML API v2 objects raycai uses, as the spec shapes them."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AppStatus(str, Enum):
    UNKNOWN = "unknown"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def normalise_status(value: object) -> AppStatus:
    """The one place that turns any spelling of an application status into AppStatus.

    Accepts the spec's enum (`APPLICATION_RUNNING`), the filter spelling (`running`), any
    case, surrounding blanks, and None; anything unrecognised is UNKNOWN.
    """
    if isinstance(value, AppStatus):
        return value
    if not isinstance(value, str):
        return AppStatus.UNKNOWN
    text = value.strip().lower()
    if text.startswith("application_"):
        text = text[len("application_") :]
    try:
        return AppStatus(text)
    except ValueError:
        return AppStatus.UNKNOWN


class ShortUser(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    username: str = ""
    name: str = ""
    email: str = ""


def _parse_time(value: Any) -> Any:
    if value in ("", None):
        return None
    return value


class Application(BaseModel):
    """An application as the API returns it; `environment` parsed from its JSON string."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    description: str = ""
    creator: ShortUser = Field(default_factory=ShortUser)
    script: str = ""
    subdomain: str = ""
    status: AppStatus = AppStatus.UNKNOWN
    created_at: datetime | None = None
    updated_at: datetime | None = None
    starting_at: datetime | None = None
    running_at: datetime | None = None
    stopped_at: datetime | None = None
    kernel: str = ""
    cpu: float = 0.0
    memory: float = 0.0
    nvidia_gpu: int = 0
    bypass_authentication: bool = False
    environment: dict[str, str] = Field(default_factory=dict)
    runtime_identifier: str = ""
    runtime_addon_identifiers: list[str] = Field(default_factory=list)
    # CML's accelerator label (an int64 the API writes as a string); "0" or "" when none.
    accelerator_label_id: str = ""

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> AppStatus:
        return normalise_status(value)

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> dict[str, str]:
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return {}
        if not isinstance(value, dict):
            return {}
        return {str(k): str(v) for k, v in value.items()}

    @field_validator(
        "created_at", "updated_at", "starting_at", "running_at", "stopped_at", mode="before"
    )
    @classmethod
    def _times(cls, value: Any) -> Any:
        return _parse_time(value)

    @field_validator("nvidia_gpu", mode="before")
    @classmethod
    def _gpu(cls, value: Any) -> Any:
        return 0 if value in (None, "") else value

    @field_validator("accelerator_label_id", mode="before")
    @classmethod
    def _label_id(cls, value: Any) -> Any:
        return "" if value in (None, "", 0, "0") else str(value)


class CreateApplication(BaseModel):
    """The body of CreateApplicationRequest; `environment` is an object here (per the spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    subdomain: str
    script: str
    description: str = ""
    cpu: float = 1.0
    memory: float = 1.0
    nvidia_gpu: int = 0
    environment: dict[str, str] = Field(default_factory=dict)
    kernel: str = ""
    bypass_authentication: bool = False
    runtime_identifier: str = ""
    runtime_addon_identifiers: list[str] = Field(default_factory=list)
    # The id of a CML accelerator label (digits; the API's int64 travels as a string), which
    # gives the application's pod that kind of GPU; left out of the body when empty.
    accelerator_label_id: str = ""

    def to_body(self, project_id: str) -> dict[str, Any]:
        body = self.model_dump()
        body["project_id"] = project_id
        if not body["runtime_addon_identifiers"]:
            del body["runtime_addon_identifiers"]
        if not body["accelerator_label_id"]:
            del body["accelerator_label_id"]
        return body


class Runtime(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    image_identifier: str
    editor: str = ""
    kernel: str = ""
    edition: str = ""
    description: str = ""
    full_version: str = ""
    status: str = ""

    @property
    def label(self) -> str:
        parts = [p for p in (self.editor, self.kernel, self.edition, self.full_version) if p]
        return " - ".join(parts) or self.image_identifier


class Project(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str = ""
    owner: ShortUser = Field(default_factory=ShortUser)
    description: str = ""
    default_engine_type: str = ""
    # MB of /dev/shm each engine of the project gets (None: the workspace did not say).
    shared_memory_limit: int | None = None


class KeyInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    valid: bool = False
    username: str = ""
    message: str = ""
