"""The cluster spec: what a user asks for, validated once, from TOML, CLI flags or the TUI form.

Every rule lives here so that the three entry points give the same specific messages.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_RAY_VERSION = "2.60.0"
DEFAULT_RAY_SEARCH = (".venv", "PATH")
NAME_MAX = 32
MAX_WORKERS = 500
MAX_CPU = 256.0
MAX_MEMORY_GB = 4096.0
MAX_GPU = 16
GIB = 2**30
# Ray's own split: the object store takes 30% of a node's memory, tasks the rest.
OBJECT_STORE_FRACTION = 0.3
RAY_MIN_OBJECT_STORE_BYTES = 78_643_200
DEFAULT_IDLE_TIMEOUT_S = 300.0
MIN_IDLE_TIMEOUT_S = 1.0
MAX_IDLE_TIMEOUT_S = 7 * 86400.0
DEFAULT_UPSCALING_SPEED = 1.0
MAX_UPSCALING_SPEED = 1000.0

NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RAY_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:(?:rc|a|b|\.dev|\.post)\d+)?$")
# Names that would read as something other than a cluster in commands, paths and app names.
RESERVED_NAMES = frozenset(
    {"all", "head", "worker", "workers", "local", "default", "none", "null", "raycai", "ray"}
)
# Variables the launchers and the platform own; a user value would break or hijack a node.
RESERVED_ENV_PREFIXES = ("RAYCAI_", "CDSW_", "RAY_AUTH_")
RESERVED_ENV = frozenset({"PATH", "HOME", "PYTHONPATH", "LD_PRELOAD", "LD_LIBRARY_PATH"})

RUNTIME_HINT = (
    "choose one with --runtime, set runtime_identifier under [head] in the spec file, or pick "
    "it in the form (runtimes are listed by the workspace: `raycai runtimes`)"
)


class SpecError(ValueError):
    """The spec is invalid. `problems` holds (field, message) pairs, field like `workers.cpu`."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{field}: {message}" if field else message for field, message in problems]
        super().__init__("invalid cluster spec:\n  " + "\n  ".join(lines))


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not true/false")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{what} must be a finite number")
    return value


class NodeSpec(BaseModel):
    """Resources of one node (one CML application)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    cpu: float = Field(default=2.0, description="vCPU of the application")
    memory: float = Field(default=8.0, description="memory of the application, GB")
    nvidia_gpu: int = Field(default=0, description="whole NVIDIA GPUs")
    runtime_identifier: str = Field(default="", description="CML runtime image identifier")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_type(cls, value: Any) -> Any:
        return _number(value, "cpu")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_type(cls, value: Any) -> Any:
        return _number(value, "memory")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: float) -> float:
        _finite(value, "cpu")
        if value <= 0:
            raise ValueError("cpu must be more than 0 vCPU")
        if value > MAX_CPU:
            raise ValueError(f"cpu must be at most {MAX_CPU:g} vCPU")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: float) -> float:
        _finite(value, "memory")
        if value < 0.5:
            raise ValueError("memory must be at least 0.5 GB (Ray needs room for its processes)")
        if value > MAX_MEMORY_GB:
            raise ValueError(f"memory must be at most {MAX_MEMORY_GB:g} GB")
        return value

    @field_validator("nvidia_gpu", mode="before")
    @classmethod
    def _gpu(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("nvidia_gpu must be a whole number, not true/false")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError(f"nvidia_gpu must be a whole number, not {value!r}") from None
        if isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                raise ValueError("nvidia_gpu must be a finite whole number")
            if not value.is_integer():
                raise ValueError(
                    f"nvidia_gpu must be a whole number ({value:g} given): "
                    "CML allocates whole GPUs to an application"
                )
            value = int(value)
        if not isinstance(value, int):
            raise ValueError("nvidia_gpu must be a whole number")
        if value < 0:
            raise ValueError("nvidia_gpu cannot be negative")
        if value > MAX_GPU:
            raise ValueError(f"nvidia_gpu must be at most {MAX_GPU}")
        return value

    @field_validator("runtime_identifier")
    @classmethod
    def _runtime(cls, value: str) -> str:
        value = value.strip()
        if value and (len(value) > 512 or any(c.isspace() or ord(c) < 32 for c in value)):
            raise ValueError("runtime_identifier must be an image identifier without spaces")
        return value

    @property
    def ray_num_cpus(self) -> int:
        """Ray takes whole CPUs: the floor of the vCPU (0 for a fractional head)."""
        return math.floor(self.cpu)

    @property
    def ray_num_gpus(self) -> int:
        return self.nvidia_gpu

    @property
    def memory_bytes(self) -> int:
        return int(self.memory * GIB)

    @property
    def ray_object_store_bytes(self) -> int:
        return max(RAY_MIN_OBJECT_STORE_BYTES, int(self.memory_bytes * OBJECT_STORE_FRACTION))

    @property
    def ray_memory_bytes(self) -> int:
        return max(0, self.memory_bytes - self.ray_object_store_bytes)


class WorkerGroupSpec(NodeSpec):
    """The worker nodes: a fixed `count`, or `min`..`max` kept by Ray's autoscaler.

    A fixed count is min = max = count (how clusters were always written). With bounds,
    `count` is the minimum (what `up` waits for). `autoscale` is derived when absent: on when
    max > min; `autoscale = true` with min = max keeps a fixed size with no terminal open.
    """

    count: int = Field(default=2, description="number of worker nodes (the minimum)")
    min: int = Field(default=2, description="fewest workers the autoscaler keeps")
    max: int = Field(default=2, description="most workers the autoscaler creates")
    autoscale: bool = Field(default=False, description="Ray's autoscaler keeps the workers")
    idle_timeout_s: float = Field(
        default=DEFAULT_IDLE_TIMEOUT_S, description="an idle worker above min goes after this"
    )
    upscaling_speed: float = Field(
        default=DEFAULT_UPSCALING_SPEED, description="nodes added at once, per node there is"
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_bounds(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return resolve_bounds(dict(data))

    @field_validator("count", "min", "max", mode="before")
    @classmethod
    def _count(cls, value: Any, info: ValidationInfo) -> Any:
        return _whole(value, str(info.field_name), 0, MAX_WORKERS)

    @field_validator("max")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if isinstance(low, int) and value < low:
            raise ValueError(f"max ({value}) must be at least min ({low})")
        return value

    @field_validator("autoscale", mode="before")
    @classmethod
    def _autoscale(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError("autoscale must be true or false")
        return value

    @field_validator("idle_timeout_s", mode="before")
    @classmethod
    def _idle_timeout(cls, value: Any) -> Any:
        value = _finite(_number(value, "idle_timeout_s"), "idle_timeout_s")
        if value < MIN_IDLE_TIMEOUT_S:
            raise ValueError(f"idle_timeout_s must be at least {MIN_IDLE_TIMEOUT_S:g} s")
        if value > MAX_IDLE_TIMEOUT_S:
            raise ValueError(f"idle_timeout_s must be at most {MAX_IDLE_TIMEOUT_S:g} s (a week)")
        return value

    @field_validator("upscaling_speed", mode="before")
    @classmethod
    def _upscaling_speed(cls, value: Any) -> Any:
        value = _finite(_number(value, "upscaling_speed"), "upscaling_speed")
        if value <= 0:
            raise ValueError("upscaling_speed must be more than 0")
        if value > MAX_UPSCALING_SPEED:
            raise ValueError(f"upscaling_speed must be at most {MAX_UPSCALING_SPEED:g}")
        return value

    @model_validator(mode="after")
    def _autoscale_needs_bounds(self) -> WorkerGroupSpec:
        if self.max > self.min and not self.autoscale:
            raise ValueError(
                f"min ({self.min}) and max ({self.max}) differ but autoscale is false: "
                "only Ray's autoscaler moves a cluster between min and max"
            )
        return self

    @field_validator("cpu")
    @classmethod
    def _worker_cpu(cls, value: float) -> float:
        if value < 1:
            raise ValueError("a worker needs at least 1 vCPU (Ray schedules whole CPUs)")
        return value

    def node_settings(self) -> NodeSpec:
        """The size and runtime of each worker: what cannot change while the cluster runs."""
        return NodeSpec(
            cpu=self.cpu,
            memory=self.memory,
            nvidia_gpu=self.nvidia_gpu,
            runtime_identifier=self.runtime_identifier,
        )


def resolve_bounds(data: dict[str, Any]) -> dict[str, Any]:
    """Fill `count`, `min`, `max` and `autoscale` of a [workers] table from the ones given.

    count alone -> min = max = count; min/max -> count = min (a missing min is 0 when only
    max is given, a missing max is min); autoscale absent -> max > min. A count that is not
    the min it comes with is refused (which one was meant?).
    """
    count = data.get("count")
    low = data.get("min")
    high = data.get("max")
    if low is None and high is None:
        if count is not None:
            data["min"] = data["max"] = count
    else:
        if low is None:
            low = count if count is not None else 0
        if high is None:
            high = low
        if count is not None and _same_whole(count, low) is False:
            raise ValueError(
                f"count ({count}) and min ({low}) disagree: with min and max, count is the "
                "minimum; give min and max only"
            )
        data.update(count=low, min=low, max=high)
    if data.get("autoscale") is None:
        data.pop("autoscale", None)
        low, high = data.get("min"), data.get("max")
        if _same_whole(low, high) is False:
            data["autoscale"] = True
    return data


def _same_whole(a: Any, b: Any) -> bool | None:
    """Whether two whole-number inputs are equal, or None when either is not a number
    (its own validator then says why)."""
    try:
        return _whole(a, "", 0, MAX_WORKERS) == _whole(b, "", 0, MAX_WORKERS)
    except ValueError:
        return None


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


class ClusterSpec(BaseModel):
    """A Ray cluster: one head application and a group of worker applications."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    head: NodeSpec = Field(default_factory=NodeSpec)
    workers: WorkerGroupSpec = Field(default_factory=WorkerGroupSpec)
    ray: RaySettings = Field(default_factory=RaySettings)
    env: dict[str, str] = Field(default_factory=dict)
    healing: bool = True

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("name must be text")
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
    def _runtimes(self) -> ClusterSpec:
        if not self.head.runtime_identifier:
            raise ValueError(f"head.runtime_identifier is required: {RUNTIME_HINT}")
        if not self.workers.runtime_identifier:
            # The worker group runs the head's runtime unless told otherwise.
            workers = self.workers.model_copy(
                update={"runtime_identifier": self.head.runtime_identifier}
            )
            object.__setattr__(self, "workers", workers)
        return self

    def with_workers(self, count: int) -> ClusterSpec:
        """This spec after a manual scale to `count` (validated): the fixed count, or the
        autoscaler's min (and its max when it must grow)."""
        data = self.model_dump()
        data["workers"].update(count=count, min=count)
        if self.workers.autoscale:
            data["workers"]["max"] = max(self.workers.max, count) if count >= 0 else count
        else:
            data["workers"]["max"] = count
        return parse_spec(data)

    def to_toml(self) -> str:
        return spec_to_toml(self)


def _number(value: Any, what: str) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not true/false")
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{what} must be a number, not {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number")
    return value


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number, not true/false")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be a whole number, not {value!r}") from None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or not value.is_integer():
            raise ValueError(f"{what} must be a whole number")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number")
    if value < low:
        raise ValueError(f"{what} must be at least {low}")
    if value > high:
        raise ValueError(f"{what} must be at most {high}")
    return value


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


def _pretty_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for item in error.errors():
        field = _pretty_loc(item.get("loc", ()))
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
        raise SpecError(_problems(exc)) from None


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


def spec_from_flags(
    *,
    name: str,
    runtime: str | None = None,
    worker_runtime: str | None = None,
    workers: int | None = None,
    cpu: float | None = None,
    memory: float | None = None,
    gpu: int | None = None,
    head_cpu: float | None = None,
    head_memory: float | None = None,
    head_gpu: int | None = None,
    ray_version: str | None = None,
    env: Mapping[str, str] | None = None,
    base: ClusterSpec | None = None,
    min_workers: int | None = None,
    max_workers: int | None = None,
    idle_timeout: float | None = None,
) -> ClusterSpec:
    """A spec from command-line flags, on top of `base` (a spec file) when given.

    `--cpu/--memory/--gpu` size the workers (as in the seed's CLI); `--head-*` the head.
    `--workers N` alone is a fixed size; with `--max-workers` it is the minimum.
    """
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    data["name"] = name
    head = data.setdefault("head", {})
    group = data.setdefault("workers", {})
    if any(v is not None for v in (workers, min_workers, max_workers)):
        _override_bounds(group, workers, min_workers, max_workers)
    for target, key, value in (
        (head, "runtime_identifier", runtime),
        (group, "runtime_identifier", worker_runtime),
        (group, "idle_timeout_s", idle_timeout),
        (group, "cpu", cpu),
        (group, "memory", memory),
        (group, "nvidia_gpu", gpu),
        (head, "cpu", head_cpu),
        (head, "memory", head_memory),
        (head, "nvidia_gpu", head_gpu),
    ):
        if value is not None:
            target[key] = value
    if ray_version is not None:
        data.setdefault("ray", {})["version"] = ray_version
    if env:
        data["env"] = {**data.get("env", {}), **env}
    return parse_spec(data)


def _override_bounds(
    group: dict[str, Any], workers: int | None, low: int | None, high: int | None
) -> None:
    """Bound flags over a spec file's [workers]: `--workers N` alone is a fixed size, with
    `--max-workers` the minimum; a bound left out keeps the file's; autoscale is re-derived."""
    if workers is not None and low is not None and workers != low:
        raise SpecError(
            [("workers.min", f"--workers {workers} and --min-workers {low} disagree: give one")]
        )
    if low is None:
        low = workers
    if high is None and workers is not None:
        high = workers
    previous = {key: group.pop(key, None) for key in ("count", "min", "max", "autoscale")}
    for key, value in (("min", low), ("max", high)):
        value = value if value is not None else previous[key]
        if value is not None:
            group[key] = value


# The TUI form validates each field as it is typed, with the same rules.
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
}


def field_problem(field: str, raw: str) -> str | None:
    """Why the text `raw` is not valid for the form field `field` (e.g. `workers.cpu`), or None."""
    if field == "name":
        return name_problem(raw.strip())
    if field in ("head.runtime_identifier", "runtime"):
        return None if raw.strip() else f"a runtime is required: {RUNTIME_HINT}"
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


def bounds_problem(min_raw: str, max_raw: str) -> str | None:
    """Why the form's min and max workers do not go together (each valid alone), or None."""
    try:
        low, high = int(float(min_raw.strip())), int(float(max_raw.strip()))
    except ValueError:
        return None  # field_problem of each field says why
    if high < low:
        return f"max ({high}) must be at least min ({low})"
    return None


def spec_to_toml(spec: ClusterSpec) -> str:
    """The spec as a TOML document that load_spec_text reads back to an equal spec."""
    import json

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, (list, tuple)):
            return "[" + ", ".join(value(part) for part in item) + "]"
        return json.dumps(str(item))  # a JSON string is a valid TOML basic string

    data = spec.model_dump()
    lines = [f"name = {value(data['name'])}", f"healing = {value(data['healing'])}", ""]
    for section in ("head", "workers", "ray"):
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value(item)}" for key, item in data[section].items())
        lines.append("")
    lines.append("[env]")
    lines.extend(f"{json.dumps(key)} = {value(item)}" for key, item in data["env"].items())
    return "\n".join(lines) + "\n"
