"""The TUI form's checks: each field's text as it is typed, with the spec's own rules and
messages, and the min/max pair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from raycai_core.spec.cluster import _problems, name_problem
from raycai_core.spec.groups import group_name_problem
from raycai_core.spec.nodes import NodeSpec, WorkerGroupSpec
from raycai_core.spec.settings import AutoscalingSettings
from raycai_core.spec.values import (
    RUNTIME_HINT,
    _accelerator_value,
    _idle_suspend_value,
    _label_id_value,
)

# The TUI form validates each field as it is typed, with the same rules. `workers.<field>`
# is a worker group's field (any group's: group_field_problem).
FORM_FIELDS: dict[str, tuple[type[BaseModel], str]] = {
    "head.cpu": (NodeSpec, "cpu"),
    "head.memory": (NodeSpec, "memory"),
    "head.nvidia_gpu": (NodeSpec, "nvidia_gpu"),
    "workers.count": (WorkerGroupSpec, "count"),
    "workers.min": (WorkerGroupSpec, "min"),
    "workers.max": (WorkerGroupSpec, "max"),
    "workers.idle_timeout_s": (WorkerGroupSpec, "idle_timeout_s"),
    "workers.upscaling_speed": (WorkerGroupSpec, "upscaling_speed"),
    "workers.cpu": (WorkerGroupSpec, "cpu"),
    "workers.memory": (WorkerGroupSpec, "memory"),
    "workers.nvidia_gpu": (WorkerGroupSpec, "nvidia_gpu"),
    "autoscaling.idle_timeout_s": (AutoscalingSettings, "idle_timeout_s"),
    "autoscaling.upscaling_speed": (AutoscalingSettings, "upscaling_speed"),
}
# Optional text fields, checked alone (the group's model also checks them against others:
# an accelerator label needs a GPU).
OPTIONAL_FORM_FIELDS: dict[str, Callable[[Any], Any]] = {
    "workers.accelerator": _accelerator_value,
    "workers.accelerator_label_id": _label_id_value,
}


def field_problem(field: str, raw: str) -> str | None:
    """Why the text `raw` is not valid for the form field `field` (e.g. `workers.cpu`), or None."""
    if field == "name":
        return name_problem(raw.strip())
    if field == "group":
        return group_name_problem(raw.strip())
    if field == "idle_suspend_minutes":  # optional: empty is off
        try:
            _idle_suspend_value(raw)
        except ValueError as exc:
            return str(exc)
        return None
    if field in ("head.runtime_identifier", "runtime"):
        return None if raw.strip() else f"a runtime is required: {RUNTIME_HINT}"
    check = OPTIONAL_FORM_FIELDS.get(field)
    if check is not None:
        try:
            check(raw)
        except ValueError as exc:
            return str(exc)
        return None
    model_and_key = FORM_FIELDS.get(field)
    if model_and_key is None:
        raise KeyError(f"no form field {field!r}")
    model, key = model_and_key
    if not raw.strip():
        return f"{key} is required"
    try:
        model.model_validate({key: raw})
    except ValidationError as exc:
        return _problems(exc)[0][1]
    return None


def group_field_problem(field: str, raw: str) -> str | None:
    """Why `raw` is not valid for a worker group's `field` (cpu, min, accelerator...), or None."""
    return field_problem(f"workers.{field}", raw)


def bounds_problem(min_raw: str, max_raw: str) -> str | None:
    """Why the form's min and max workers do not go together (each valid alone), or None."""
    try:
        low, high = int(float(min_raw.strip())), int(float(max_raw.strip()))
    except ValueError:
        return None  # field_problem of each field says why
    if high < low:
        return f"max ({high}) must be at least min ({low})"
    return None
