"""`search_filter`, `sort`, `page_size` and `page_token` of the list operations."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from raycai_core.local.errors import bad_request

APP_STATUS_WORDS = ("running", "stopping", "stopped", "starting", "failed")

# Keys per list operation, from the parameter descriptions in the spec.
APP_FILTER_KEYS = (
    "bypass_authentication",
    "creator.email",
    "creator.name",
    "creator.username",
    "description",
    "kernel",
    "name",
    "script",
    "status",
    "subdomain",
)
APP_SORT_KEYS = (
    "created_at",
    "creator.email",
    "creator.name",
    "creator.username",
    "description",
    "kernel",
    "name",
    "script",
    "status",
    "updated_at",
)
PROJECT_FILTER_KEYS = (
    "creator.email",
    "creator.name",
    "creator.username",
    "description",
    "name",
    "owner.email",
    "owner.name",
    "owner.username",
)
PROJECT_SORT_KEYS = (*PROJECT_FILTER_KEYS, "created_at", "updated_at")
RUNTIME_KEYS = ("image_identifier", "editor", "kernel", "edition", "description", "full_version")
ADDON_KEYS = ("identifier", "component", "display_name", "status")


def _field(item: Mapping[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_filter(raw: str | None, allowed: Sequence[str]) -> dict[str, str]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise bad_request('search_filter must be a JSON object of strings, e.g. {"name":"raycai-"}')
    result: dict[str, str] = {}
    for key, wanted in value.items():
        if key not in allowed:
            raise bad_request(
                f"unsupported search_filter key {key!r}; supported keys are: " + ", ".join(allowed)
            )
        if isinstance(wanted, (dict, list)) or wanted is None:
            raise bad_request(f"search_filter value for {key!r} must be a string")
        result[key] = _text(wanted)
    if "status" in result and result["status"] not in APP_STATUS_WORDS:
        raise bad_request(
            f"invalid status {result['status']!r} in search_filter; one of: "
            + ", ".join(APP_STATUS_WORDS)
        )
    return result


def matches(item: Mapping[str, Any], search: Mapping[str, str]) -> bool:
    """Case-sensitive substring per field; `status` compares the lower-case word."""
    for key, wanted in search.items():
        if key == "status":
            if item.get("status") != "APPLICATION_" + wanted.upper():
                return False
        elif wanted not in _text(_field(item, key)):
            return False
    return True


def parse_sort(raw: str | None, allowed: Sequence[str]) -> list[tuple[str, bool]]:
    """`-updated_at,name` -> [("updated_at", True), ("name", False)] (True: descending)."""
    keys: list[tuple[str, bool]] = []
    for part in (raw or "").split(","):
        # A "+" in a query string arrives as a space.
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        key = part.lstrip("+-").strip()
        if key not in allowed:
            raise bad_request(
                f"unsupported sort key {key!r}; supported keys are: " + ", ".join(allowed)
            )
        keys.append((key, descending))
    return keys


def sort_items(items: list[dict[str, Any]], keys: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    result = list(items)
    for key, descending in reversed(keys):
        result.sort(key=lambda item: _sort_value(_field(item, key)), reverse=descending)
    return result


def _sort_value(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, _text(value))


def parse_page_size(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or not raw.strip():
        return default
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f'invalid value for int32 field "page_size": {raw!r}') from None
    if size < 0:
        raise bad_request("page_size must not be negative")
    return min(size or default, maximum)


def _fingerprint(context: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(context)).encode()).hexdigest()[:12]


def page(
    items: list[dict[str, Any]],
    *,
    page_size: int,
    page_token: str | None,
    context: Sequence[Any],
) -> tuple[list[dict[str, Any]], str]:
    """One page and the next page's token ("" on the last page).

    The token is opaque to clients: an offset tied to the filter and sort it was made for.
    """
    offset = 0
    if page_token:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=="))
            offset = int(decoded["o"])
            valid = decoded["f"] == _fingerprint(context) and offset >= 0
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise bad_request("invalid page_token (it belongs to another query or is corrupt)")
    end = offset + page_size
    if end >= len(items):
        return items[offset:], ""
    token = json.dumps({"o": end, "f": _fingerprint(context)}, separators=(",", ":"))
    return items[offset:end], base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
