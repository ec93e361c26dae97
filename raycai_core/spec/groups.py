"""Worker groups in a spec: their names and the two shapes of [workers].

Input: a [workers] table of settings is one group (`worker`); a [workers] table of
[workers.<group>] sub-tables names the groups. Output: the shape an older raycai still reads.
Problems of a shape come as _ShapeError, one (field, message) each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raycai_core.spec.nodes import WorkerGroupSpec
from raycai_core.spec.values import (
    AUTOSCALING_KEYS,
    GROUP_NAME_MAX,
    GROUP_NAME_RE,
    MAX_GROUPS,
    _number,
)


class _ShapeError(ValueError):
    """Problems with the shape of [workers], each with its own field (see _problems)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


# Names a group cannot take: the head, `all` (a command's "every group"), and the settings
# a [workers] table may hold (a sub-table with such a name would read as a setting).
RESERVED_GROUP_NAMES = frozenset(
    {"head", "all"} | {key for key in WorkerGroupSpec.model_fields if "_" not in key}
)


def group_name_problem(name: str) -> str | None:
    """Why `name` cannot name a worker group, or None when it can."""
    if not name:
        return "group name is required"
    if len(name) > GROUP_NAME_MAX:
        return f"group name must be at most {GROUP_NAME_MAX} characters ({len(name)} given)"
    if not GROUP_NAME_RE.match(name):
        return (
            f"group name {name!r} must use lower-case letters and digits and start with a "
            "letter (it becomes part of node and application names)"
        )
    if name in RESERVED_GROUP_NAMES:
        return f"group name {name!r} is reserved; choose another"
    return None


_TABLE_SETTINGS = ("resources", "labels")


def _split_workers(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A [workers] table's own settings and its group sub-tables. A key holding a table is
    a group (`[workers.cpu]` is then refused for its reserved name), except the settings
    that are tables; anything else is a setting (an unknown one is refused as such)."""
    settings: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _TABLE_SETTINGS and isinstance(value, Mapping):
            tables[str(key)] = value
        else:
            settings[str(key)] = value
    return settings, tables


def _one_group_shape(raw: Any) -> bool:
    """Whether a [workers] value is today's one-group table (or absent, or not a table)."""
    return not isinstance(raw, Mapping) or not _split_workers(raw)[1]


def _as_number(value: Any) -> float | None:
    try:
        number = _number(value, "")
        return float(number)
    except (ValueError, TypeError):
        return None


def _check_one_group_autoscaling(raw: Any, autoscaling: Any) -> None:
    """A one-table [workers] may set idle_timeout_s/upscaling_speed as before; together with
    [autoscaling] the two must agree."""
    if not isinstance(raw, Mapping) or not isinstance(autoscaling, Mapping):
        return
    problems = []
    for key in AUTOSCALING_KEYS:
        if key in raw and key in autoscaling:
            here, there = _as_number(raw[key]), _as_number(autoscaling[key])
            if here is not None and there is not None and here != there:
                problems.append(
                    (
                        f"workers.{key}",
                        f"workers.{key} ({here:g}) and autoscaling.{key} ({there:g}) disagree: "
                        "set it once, in [autoscaling]",
                    )
                )
    if problems:
        raise _ShapeError(problems)


def _named_groups(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The groups of a [workers] table made of [workers.<group>] sub-tables, or _ShapeError."""
    settings, tables = _split_workers(raw)
    problems: list[tuple[str, str]] = []
    if settings:
        problems.append(
            (
                "workers",
                f"[workers] has both settings ({', '.join(settings)}) and group tables "
                f"({', '.join(f'[workers.{name}]' for name in tables)}): give either one "
                "group's settings in [workers] or only [workers.<group>] tables",
            )
        )
    if len(tables) > MAX_GROUPS:
        problems.append(("workers", f"at most {MAX_GROUPS} worker groups ({len(tables)} given)"))
    for name, table in tables.items():
        problem = group_name_problem(name)
        if problem:
            problems.append((f"workers.{name}", problem))
        for key in AUTOSCALING_KEYS:
            if key in table:
                what = "idle timeout" if key == "idle_timeout_s" else "upscaling speed"
                problems.append(
                    (
                        f"workers.{name}.{key}",
                        f"{key} cannot be set per group: Ray's v1 autoscaler has one {what} "
                        f"for the cluster: set it in [autoscaling]",
                    )
                )
    if problems:
        raise _ShapeError(problems)
    return dict(tables)


def _compact_group(group: dict[str, Any], *, one_table: bool) -> dict[str, Any]:
    """A group's dump: the new settings only when set (an older raycai forbids unknown keys),
    and the cluster-wide autoscaler settings only in the one-table shape."""
    skip = () if one_table else AUTOSCALING_KEYS
    return {
        key: value
        for key, value in group.items()
        if key not in skip and not (key in _NEW_GROUP_KEYS and value in ("", {}))
    }


_NEW_GROUP_KEYS = frozenset({"accelerator", "accelerator_label_id", "resources", "labels"})
