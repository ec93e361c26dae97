"""The cluster-wide settings: Ray's (version, where to find it, ports), its autoscaler's and
where Ray Serve listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raycai_core.spec.values import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_RAY_SEARCH,
    DEFAULT_RAY_VERSION,
    DEFAULT_UPSCALING_SPEED,
    RAY_VERSION_RE,
    _idle_timeout_value,
    _upscaling_speed_value,
    _whole,
)


class RaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = DEFAULT_RAY_VERSION
    search: tuple[str, ...] = DEFAULT_RAY_SEARCH
    gcs_port: int = 6379
    client_port: int = 10001

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.strip()
        if not RAY_VERSION_RE.match(value):
            raise ValueError(f"ray version must look like 2.60.0, not {value!r}")
        return value

    @field_validator("search")
    @classmethod
    def _search(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('ray search path is empty: use e.g. [".venv", "PATH"]')
        for entry in value:
            if entry == "PATH":
                continue
            if not entry or "\x00" in entry or "\n" in entry or ".." in Path(entry).parts:
                raise ValueError(
                    f"ray search entry {entry!r} must be a virtualenv path inside the "
                    'project (like ".venv") or "PATH"'
                )
        return value

    @field_validator("gcs_port", "client_port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        return _whole(value, "port", 1024, 65535)


class AutoscalingSettings(BaseModel):
    """Ray's v1 autoscaler settings, one for the whole cluster (it has one idle timeout)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_timeout_s: float = Field(
        default=DEFAULT_IDLE_TIMEOUT_S, description="an idle worker above min goes after this"
    )
    upscaling_speed: float = Field(
        default=DEFAULT_UPSCALING_SPEED, description="nodes added at once, per node there is"
    )

    @field_validator("idle_timeout_s", mode="before")
    @classmethod
    def _idle_timeout(cls, value: Any) -> Any:
        return _idle_timeout_value(value)

    @field_validator("upscaling_speed", mode="before")
    @classmethod
    def _upscaling_speed(cls, value: Any) -> Any:
        return _upscaling_speed_value(value)


class ServeSettings(BaseModel):
    """Where Ray Serve's one HTTP proxy (on the head) listens: `loopback` (the default; reached
    through the head application's URL with the cluster's token) or `pod` (every interface of
    the head's pod too, with no authentication at all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: Literal["loopback", "pod"] = Field(
        default="loopback", description="loopback, or pod: open on the pod network, no token"
    )
