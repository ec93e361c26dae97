"""ClusterSpec (the head, the worker groups, Ray, env) and how a spec is read: from plain
data (parse_spec), TOML text or a file, with every problem as a (field, message) in SpecError.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from raycai_core.naming import DEFAULT_GROUP, group_hash
from raycai_core.spec.groups import (
    _check_one_group_autoscaling,
    _compact_group,
    _named_groups,
    _one_group_shape,
    _ShapeError,
)
from raycai_core.spec.nodes import NodeSpec, WorkerGroupSpec
from raycai_core.spec.settings import AutoscalingSettings, RaySettings, ServeSettings
from raycai_core.spec.tomlout import spec_to_toml
from raycai_core.spec.values import (
    AUTOSCALING_KEYS,
    ENV_NAME_RE,
    NAME_MAX,
    NAME_RE,
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
    RESERVED_NAMES,
    RUNTIME_HINT,
    SpecError,
    _idle_suspend_value,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class ClusterSpec(BaseModel):
    """A Ray cluster: one head application and one or more named groups of workers.

    Input: a [workers] table with settings is one group named `worker` (how clusters were
    always written); a [workers] table of [workers.<group>] sub-tables names the groups.
    Output (model_dump, to_toml) writes a one-group cluster whose group is `worker` in the
    one-table shape, so an older raycai still reads it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    head: NodeSpec = Field(default_factory=NodeSpec)
    groups: dict[str, WorkerGroupSpec] = Field(
        default_factory=lambda: {DEFAULT_GROUP: WorkerGroupSpec()}
    )
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    env: dict[str, str] = Field(default_factory=dict)
    healing: bool = True
    # The head suspends the cluster after this many minutes with nothing to do (None: never).
    idle_suspend_minutes: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _worker_groups(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "groups" in data:
            raise _ShapeError(
                [("groups", "unknown setting 'groups': worker groups are [workers.<group>] tables")]
            )
        raw = data.pop("workers", None)
        if raw is None:
            data["groups"] = {DEFAULT_GROUP: {}}
        elif _one_group_shape(raw):
            _check_one_group_autoscaling(raw, data.get("autoscaling"))
            data["groups"] = {DEFAULT_GROUP: raw}
        else:
            data["groups"] = _named_groups(raw)
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("name must be text")
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("idle_suspend_minutes", mode="before")
    @classmethod
    def _idle_suspend(cls, value: Any) -> Any:
        return _idle_suspend_value(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"environment variable name {key!r} is not a valid name")
            if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"environment variable {key} is set by raycai or CML itself")
            if "\x00" in item:
                raise ValueError(f"environment variable {key} contains a NUL character")
        return value

    @model_validator(mode="after")
    def _resolve_groups(self) -> ClusterSpec:
        if not self.head.runtime_identifier:
            raise ValueError(f"head.runtime_identifier is required: {RUNTIME_HINT}")
        autoscaling = self.autoscaling
        # One-table [workers] may carry the cluster's autoscaler settings (how they were
        # written before [autoscaling]); they agree with [autoscaling] (checked before).
        given = {
            key: getattr(group, key)
            for group in self.groups.values()
            for key in AUTOSCALING_KEYS
            if key in group.model_fields_set
        }
        if given:
            autoscaling = autoscaling.model_copy(update=given)
        hashes: dict[str, str] = {}
        for name in self.groups:
            if name == DEFAULT_GROUP:
                continue  # its subdomains carry no group hash (see naming.subdomain)
            other = hashes.setdefault(group_hash(name), name)
            if other != name:
                raise ValueError(
                    f"worker groups {other!r} and {name!r} would share application "
                    "subdomains (their short hashes clash): rename one"
                )
        groups = {
            name: group.model_copy(
                update={
                    # A group runs the head's runtime unless told otherwise.
                    "runtime_identifier": group.runtime_identifier or self.head.runtime_identifier,
                    "idle_timeout_s": autoscaling.idle_timeout_s,
                    "upscaling_speed": autoscaling.upscaling_speed,
                }
            )
            for name, group in self.groups.items()
        }
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "autoscaling", autoscaling)
        return self

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        one_table = self.group_names == (DEFAULT_GROUP,)
        result: dict[str, Any] = {}
        for key, value in data.items():
            if key == "groups":
                if one_table:
                    result["workers"] = _compact_group(value[DEFAULT_GROUP], one_table=True)
                else:
                    result["workers"] = {
                        name: _compact_group(group, one_table=False)
                        for name, group in value.items()
                    }
            elif key == "autoscaling":
                if not one_table:
                    result["autoscaling"] = value
            elif key == "serve":
                if self.serve != ServeSettings():  # an older raycai reads a default spec
                    result["serve"] = value
            elif key == "idle_suspend_minutes":
                if value is not None:  # likewise
                    result[key] = value
            else:
                result[key] = value
        return result

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.groups)

    @property
    def workers(self) -> WorkerGroupSpec:
        """The cluster's one worker group; a cluster with several raises (use `groups`)."""
        if len(self.groups) == 1:
            return next(iter(self.groups.values()))
        raise RuntimeError(
            f"cluster {self.name} has several worker groups ({', '.join(self.groups)}): "
            "use spec.groups"
        )

    def group(self, name: str) -> WorkerGroupSpec:
        try:
            return self.groups[name]
        except KeyError:
            raise KeyError(
                f"cluster {self.name} has no worker group {name!r} "
                f"(its groups: {', '.join(self.groups)})"
            ) from None

    def with_workers(self, count: int) -> ClusterSpec:
        """This spec after a manual scale of its one group to `count` (validated): the fixed
        count, or the autoscaler's min (and its max when it must grow)."""
        self.workers  # noqa: B018 - several groups: a clear error, not a guess
        return self.with_group_count(self.group_names[0], count)

    def with_group_count(self, group: str, count: int) -> ClusterSpec:
        """This spec after a manual scale of `group` to `count` (validated), as with_workers."""
        current = self.group(group)
        data = self.model_dump()
        table = data["workers"] if self.group_names == (DEFAULT_GROUP,) else data["workers"][group]
        table.update(count=count, min=count)
        if current.autoscale:
            table["max"] = max(current.max, count) if count >= 0 else count
        else:
            table["max"] = count
        return parse_spec(data)

    def to_toml(self) -> str:
        return spec_to_toml(self)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a cluster, or None when it can."""
    if not name:
        return "name is required"
    if len(name) > NAME_MAX:
        return f"name must be at most {NAME_MAX} characters ({len(name)} given)"
    if name in RESERVED_NAMES:
        return f"name {name!r} is reserved; choose another"
    if not NAME_RE.match(name):
        return (
            "name must use lower-case letters, digits and hyphens, start with a letter and "
            "not end with a hyphen (it becomes part of application names and subdomains)"
        )
    if "--" in name:
        return "name cannot contain two hyphens in a row"
    return None


def _pretty_loc(loc: tuple[Any, ...], one_table: bool = True) -> str:
    parts = [str(part) for part in loc]
    # The model holds `groups`; the user wrote [workers] (one table) or [workers.<group>].
    if parts[:1] == ["groups"]:
        parts = ["workers", *parts[2:]] if one_table else ["workers", *parts[1:]]
    return ".".join(parts)


def _problems(error: ValidationError, one_table: bool = True) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, _ShapeError):
            problems.extend(cause.problems)
            continue
        field = _pretty_loc(item.get("loc", ()), one_table)
        kind = item.get("type", "")
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if kind == "extra_forbidden":
            section, _, key = field.rpartition(".")
            where = f" in [{section}]" if section else ""
            message = f"unknown setting {key!r}{where}"
        elif kind == "missing":
            message = "is required"
        elif kind in ("dict_type", "model_type"):
            message = "must be a table of settings"
        elif kind.endswith("_type") or kind.endswith("_parsing"):
            message = f"has the wrong type ({message.lower()})"
        problems.append((field, message))
    return problems


def parse_spec(data: Mapping[str, Any]) -> ClusterSpec:
    """A validated ClusterSpec from plain data (TOML tables, JSON), or SpecError."""
    try:
        return ClusterSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(_problems(exc, _one_group_shape(data.get("workers")))) from None


def load_spec_text(text: str, source: str = "spec") -> ClusterSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([("", f"{source} is not valid TOML: {exc}")]) from None
    return parse_spec(data)


def load_spec_file(path: str | Path) -> ClusterSpec:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([("", f"spec file {str(file)!r} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([("", f"cannot read spec file {str(file)!r}: {exc}")]) from None
    return load_spec_text(text, source=str(file))
