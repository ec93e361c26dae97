"""Request bodies checked as grpc-gateway (protojson) does: unknown fields and wrong types
are 400 with a message naming the field. Field lists follow the spec's definitions."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from raycai_core.local.errors import bad_request
from raycai_core.local.state import STATUSES

STRING = "string"
DOUBLE = "double"
INT32 = "int32"
INT64 = "int64"
BOOL = "bool"
STRING_MAP = "map<string, string>"
STRING_LIST = "repeated string"
SHORT_USER = "ShortUser"
PERMISSIONS = "ProjectPermissions"
APP_STATUS = "ApplicationStatus"

SHORT_USER_FIELDS = {"username": STRING, "name": STRING, "email": STRING}
PERMISSION_FIELDS = {
    name: BOOL for name in ("read", "write", "admin", "business_user", "operator", "inherit")
}

CREATE_APPLICATION = {
    "project_id": STRING,
    "name": STRING,
    "subdomain": STRING,
    "description": STRING,
    "script": STRING,
    "cpu": DOUBLE,
    "memory": DOUBLE,
    "nvidia_gpu": INT32,
    "environment": STRING_MAP,
    "kernel": STRING,
    "bypass_authentication": BOOL,
    "runtime_identifier": STRING,
    "runtime_addon_identifiers": STRING_LIST,
    "run_as": INT32,
    "cdv_app": BOOL,
    "accelerator_label_id": INT64,
    "resource_group_id": INT32,
    "resource_profile_id": INT32,
}
APPLICATION = {
    **{k: v for k, v in CREATE_APPLICATION.items() if k not in ("project_id", "environment")},
    "id": STRING,
    "creator": SHORT_USER,
    "status": APP_STATUS,
    "created_at": STRING,
    "stopped_at": STRING,
    "updated_at": STRING,
    "starting_at": STRING,
    "running_at": STRING,
    "environment": STRING,  # a JSON-encoded object in Application, unlike the create request
}
CREATE_PROJECT = {
    "name": STRING,
    "description": STRING,
    "visibility": STRING,
    "parent_project": STRING,
    "git_url": STRING,
    "template": STRING,
    "organization_permission": STRING,
    "default_project_engine_type": STRING,
    "environment": STRING_MAP,
    "shared_memory_limit": INT32,
    "team_name": STRING,
    "git_ref": STRING,
}
PROJECT = {
    "id": STRING,
    "name": STRING,
    "owner": SHORT_USER,
    "creator": SHORT_USER,
    "description": STRING,
    "visibility": STRING,
    "default_engine_type": STRING,
    "created_at": STRING,
    "updated_at": STRING,
    "creation_status": STRING,
    "permissions": PERMISSIONS,
    "shared_memory_limit": INT32,
    "environment": STRING,
    "ephemeral_storage_request": INT32,
    "ephemeral_storage_limit": INT32,
    "slug": STRING,
}
VALIDATE_KEY = {"audience": STRING}
FILE_INFO = {"path": STRING, "is_dir": BOOL, "file_size": INT64}

_INT_RANGES = {INT32: (-(2**31), 2**31 - 1), INT64: (-(2**63), 2**63 - 1)}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def parse_body(raw: bytes, fields: dict[str, str], message: str) -> dict[str, Any]:
    """The body's fields (snake_case names, checked types); an empty body is `{}`."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"invalid JSON in request body: {exc}") from None
    return check_object(data, fields, message)


def check_object(data: Any, fields: dict[str, str], message: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad_request(f"{message} must be a JSON object")
    # protojson accepts the proto name and the lowerCamelCase JSON name of each field.
    aliases = {**{_camel(name): name for name in fields}, **{name: name for name in fields}}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key)
        if name is None:
            raise bad_request(f'unknown field "{key}" in {message}')
        if value is None:
            continue
        out[name] = _coerce(fields[name], name, value)
    return out


def _coerce(kind: str, name: str, value: Any) -> Any:
    def bad() -> Exception:
        shown = json.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return bad_request(f'invalid value for {kind} field "{name}": {shown}')

    if kind == STRING:
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == DOUBLE:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if kind in (INT32, INT64):
        integral_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        integral_text = isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())
        integral = isinstance(value, int) or integral_float or integral_text
        if isinstance(value, bool) or not integral:
            raise bad()
        number = int(value)
        low, high = _INT_RANGES[kind]
        if not low <= number <= high:
            raise bad()
        return number
    if kind == STRING_MAP:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad()
        return dict(value)
    if kind == STRING_LIST:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad()
        return list(value)
    if kind == APP_STATUS:
        if value not in STATUSES:
            raise bad()
        return value
    if kind == SHORT_USER:
        return check_object(value, SHORT_USER_FIELDS, f'field "{name}"')
    if kind == PERMISSIONS:
        return check_object(value, PERMISSION_FIELDS, f'field "{name}"')
    raise AssertionError(kind)


def parse_environment(text: str, name: str = "environment") -> dict[str, str]:
    """An Application's `environment`: a JSON-encoded object of strings."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f'field "{name}" must be a JSON-encoded object of strings')
    return value
