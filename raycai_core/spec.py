"""The cluster spec: what a user asks for, validated once, from TOML, CLI flags or the TUI form.

Every rule lives here so that the three entry points give the same specific messages.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from raycai_core.naming import DEFAULT_GROUP, group_hash

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
GROUP_NAME_MAX = 12
MAX_GROUPS = 16
MAX_RESOURCE_VALUE = 1e9
MAX_CUSTOM_ENTRIES = 32
INT64_MAX = 2**63 - 1

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
# Group names: short (they go into app names and node names), no hyphen (so `<group>-<k>`
# parses back).
GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
ACCELERATOR_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LABEL_ID_RE = re.compile(r"^[0-9]{1,19}$")
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"
# Custom Ray resource names: no `:` or `/` (Ray's own `node:<ip>` and `accelerator_type:<T>`),
# and never `_group_` (Ray names placement-group bundle resources `<name>_group_<id>`).
RESOURCE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# Ray's resources that raycai derives from the group's sizes: the field to set instead.
DERIVED_RESOURCES = {
    "CPU": "cpu",
    "GPU": "nvidia_gpu",
    "memory": "memory",
    "object_store_memory": "memory",
}
# Ray node labels follow Kubernetes label syntax: an optional DNS-subdomain prefix and `/`,
# a name of at most 63 characters; a value is empty or like a name.
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
LABEL_PREFIX_RE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
RESERVED_LABEL_PREFIXES = ("raycai/", "ray.io/")
# Settings of Ray's v1 autoscaler that hold for the whole cluster, not per group.
AUTOSCALING_KEYS = ("idle_timeout_s", "upscaling_speed")

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


def _idle_timeout_value(value: Any) -> Any:
    value = _finite(_number(value, "idle_timeout_s"), "idle_timeout_s")
    if value < MIN_IDLE_TIMEOUT_S:
        raise ValueError(f"idle_timeout_s must be at least {MIN_IDLE_TIMEOUT_S:g} s")
    if value > MAX_IDLE_TIMEOUT_S:
        raise ValueError(f"idle_timeout_s must be at most {MAX_IDLE_TIMEOUT_S:g} s (a week)")
    return value


def _upscaling_speed_value(value: Any) -> Any:
    value = _finite(_number(value, "upscaling_speed"), "upscaling_speed")
    if value <= 0:
        raise ValueError("upscaling_speed must be more than 0")
    if value > MAX_UPSCALING_SPEED:
        raise ValueError(f"upscaling_speed must be at most {MAX_UPSCALING_SPEED:g}")
    return value


def _accelerator_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError('accelerator must be text, a Ray accelerator type such as "L40S"')
    value = value.strip()
    if value and not ACCELERATOR_RE.match(value):
        raise ValueError(
            f"accelerator {value!r} must be a Ray accelerator type such as L40S or A100: "
            "letters, digits, '-', '_' and '.', at most 64 characters"
        )
    return value


def _label_id_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("accelerator_label_id must be the id of a CML accelerator label (digits)")
    value = value.strip()
    if value and (not LABEL_ID_RE.match(value) or int(value) > INT64_MAX):
        raise ValueError(
            f"accelerator_label_id must be the id of a CML accelerator label (digits), "
            f"not {value!r}"
        )
    return value


def _resources_value(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError("resources must be a table of Ray resource names and amounts")
    if len(value) > MAX_CUSTOM_ENTRIES:
        raise ValueError(f"resources: at most {MAX_CUSTOM_ENTRIES} custom resources")
    result: dict[str, float] = {}
    for key, amount in value.items():
        name = str(key)
        source = DERIVED_RESOURCES.get(name)
        if name.startswith(ACCELERATOR_RESOURCE_PREFIX):
            source = "accelerator"
        if source is not None:
            raise ValueError(
                f"resource {name!r} comes from the group's {source}: set {source} instead"
            )
        if not RESOURCE_NAME_RE.match(name) or "_group_" in name:
            raise ValueError(
                f"resource name {name!r} must start with a letter and use letters, digits, "
                "'_', '-' and '.' (at most 64 characters, never '_group_', which Ray's "
                "placement groups use)"
            )
        number = _finite(_number(amount, f"resource {name}"), f"resource {name}")
        if number <= 0:
            raise ValueError(f"resource {name} must be more than 0")
        if number > MAX_RESOURCE_VALUE:
            raise ValueError(f"resource {name} must be at most {MAX_RESOURCE_VALUE:g}")
        result[name] = float(number)
    return result


def _label_key_problem(key: str) -> str | None:
    if key.startswith(RESERVED_LABEL_PREFIXES):
        prefix = next(p for p in RESERVED_LABEL_PREFIXES if key.startswith(p))
        return f"label {key!r} starts with {prefix!r}: raycai and Ray set those labels"
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not LABEL_PREFIX_RE.match(prefix)):
        return f"label {key!r} has an invalid prefix (a DNS subdomain such as example.com)"
    if not LABEL_NAME_RE.match(name):
        return (
            f"label {key!r} must be letters, digits, '-', '_' and '.' (at most 63, starting "
            "and ending with a letter or digit), with an optional prefix/"
        )
    return None


def _labels_value(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("labels must be a table of Ray node label keys and values")
    if len(value) > MAX_CUSTOM_ENTRIES:
        raise ValueError(f"labels: at most {MAX_CUSTOM_ENTRIES} labels")
    result: dict[str, str] = {}
    for key, item in value.items():
        problem = _label_key_problem(str(key))
        if problem:
            raise ValueError(problem)
        if not isinstance(item, str):
            raise ValueError(f"label {key!s} must be text")
        if item and not LABEL_NAME_RE.match(item):
            raise ValueError(
                f"label {key!s} value {item!r} must be empty or letters, digits, '-', '_' and "
                "'.' (at most 63, starting and ending with a letter or digit)"
            )
        result[str(key)] = item
    return result


class WorkerGroupSpec(NodeSpec):
    """One group of worker nodes: a fixed `count`, or `min`..`max` kept by Ray's autoscaler.

    A fixed count is min = max = count (how clusters were always written). With bounds,
    `count` is the minimum (what `up` waits for). `autoscale` is derived when absent: on when
    max > min; `autoscale = true` with min = max keeps a fixed size with no terminal open.

    `idle_timeout_s` and `upscaling_speed` hold for the whole cluster (ClusterSpec.autoscaling);
    in a cluster each group carries a copy of them so that code reading `spec.workers` keeps
    working. `accelerator` becomes Ray's `accelerator_type:<T>` resource; `accelerator_label_id`
    is CML's label that gives the application that GPU.
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
    accelerator: str = Field(default="", description="Ray accelerator type, e.g. L40S")
    accelerator_label_id: str = Field(
        default="", description="CML accelerator label id that gives the pods that GPU"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources of each node"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Ray node labels")

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
        return _idle_timeout_value(value)

    @field_validator("upscaling_speed", mode="before")
    @classmethod
    def _upscaling_speed(cls, value: Any) -> Any:
        return _upscaling_speed_value(value)

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator(cls, value: Any) -> Any:
        return _accelerator_value(value)

    @field_validator("accelerator_label_id", mode="before")
    @classmethod
    def _accelerator_label_id(cls, value: Any) -> Any:
        return _label_id_value(value)

    @field_validator("accelerator_label_id")
    @classmethod
    def _label_needs_gpu(cls, value: str, info: ValidationInfo) -> str:
        gpus = info.data.get("nvidia_gpu")
        if value and isinstance(gpus, int) and gpus < 1:
            raise ValueError(
                f"accelerator_label_id ({value}) needs nvidia_gpu of at least 1: CML uses "
                "the label to pick the GPUs of the application"
            )
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        return _resources_value(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return _labels_value(value)

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

    def ray_resources(self) -> dict[str, float]:
        """The custom Ray resources of each node, with `accelerator_type:<T>` = 1 when the
        group has an accelerator (as Ray's own node providers do); CPU, GPU and memory come
        from the sizes."""
        resources = dict(self.resources)
        if self.accelerator:
            resources[ACCELERATOR_RESOURCE_PREFIX + self.accelerator] = 1.0
        return resources


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
    env: dict[str, str] = Field(default_factory=dict)
    healing: bool = True

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
    groups: Sequence[str] | None = None,
) -> ClusterSpec:
    """A spec from command-line flags, on top of `base` (a spec file) when given.

    `--cpu/--memory/--gpu` size the workers (as in the seed's CLI); `--head-*` the head.
    `--workers N` alone is a fixed size; with `--max-workers` it is the minimum.
    `--group NAME:key=value,...` (repeatable, see parse_group_flag) gives the worker groups
    instead: then the cluster has exactly those groups, each starting from the spec file's
    group of that name when there is one; `--worker-runtime` is the runtime of every group
    that names none.
    """
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    data["name"] = name
    head = data.setdefault("head", {})
    sizing = {
        "--cpu": cpu,
        "--memory": memory,
        "--gpu": gpu,
        "--workers": workers,
        "--min-workers": min_workers,
        "--max-workers": max_workers,
    }
    if groups:
        given = [flag for flag, value in sizing.items() if value is not None]
        if given:
            raise SpecError(
                [
                    (
                        "--group",
                        f"--group sizes each worker group; {'/'.join(given)} cannot be given "
                        "with it: put cpu=, memory=, gpu=, count= or min=/max= in each --group",
                    )
                ]
            )
        _groups_from_flags(data, base, groups, worker_runtime)
        if idle_timeout is not None:
            data.setdefault("autoscaling", {})["idle_timeout_s"] = idle_timeout
    else:
        flags = [flag for flag, value in sizing.items() if value is not None]
        if worker_runtime is not None:
            flags.append("--worker-runtime")
        group = _single_group_table(data, base, flags)
        if any(v is not None for v in (workers, min_workers, max_workers)):
            _override_bounds(group, workers, min_workers, max_workers)
        for key, value in (
            ("runtime_identifier", worker_runtime),
            ("cpu", cpu),
            ("memory", memory),
            ("nvidia_gpu", gpu),
        ):
            if value is not None:
                group[key] = value
        if idle_timeout is not None:
            if "autoscaling" in data:
                data["autoscaling"]["idle_timeout_s"] = idle_timeout
            else:  # the one-table shape, so that a problem reads workers.idle_timeout_s
                group["idle_timeout_s"] = idle_timeout
    for key, value in (
        ("runtime_identifier", runtime),
        ("cpu", head_cpu),
        ("memory", head_memory),
        ("nvidia_gpu", head_gpu),
    ):
        if value is not None:
            head[key] = value
    if ray_version is not None:
        data.setdefault("ray", {})["version"] = ray_version
    if env:
        data["env"] = {**data.get("env", {}), **env}
    return parse_spec(data)


def _single_group_table(
    data: dict[str, Any], base: ClusterSpec | None, flags: list[str]
) -> dict[str, Any]:
    """The table the single-group flags change: [workers], or a spec file's one group."""
    if base is None or base.group_names == (DEFAULT_GROUP,):
        return data.setdefault("workers", {})
    if len(base.groups) > 1 and flags:
        raise SpecError(
            [
                (
                    "--group",
                    f"the spec file has several worker groups ({', '.join(base.groups)}): "
                    f"size them with --group NAME:key=value,... instead of {'/'.join(flags)}",
                )
            ]
        )
    if len(base.groups) > 1:
        return {}  # nothing to change
    return data["workers"][base.group_names[0]]


def _groups_from_flags(
    data: dict[str, Any],
    base: ClusterSpec | None,
    flags: Sequence[str],
    worker_runtime: str | None,
) -> None:
    """Replace data's worker groups with the --group flags' (see spec_from_flags)."""
    tables: dict[str, dict[str, Any]] = {}
    for text in flags:
        name, settings = parse_group_flag(text)
        if name in tables:
            raise SpecError([("--group", f"--group {text!r}: group {name!r} is given twice")])
        table: dict[str, Any] = {}
        if base is not None and name in base.groups:
            table = base.groups[name].model_dump(exclude=set(AUTOSCALING_KEYS))
        _group_bounds(table, {k: settings.pop(k) for k in ("count", "min", "max") if k in settings})
        for key in ("resources", "labels"):
            if key in settings:
                settings[key] = {**table.get(key, {}), **settings[key]}
        table.update(settings)
        if worker_runtime is not None and "runtime_identifier" not in settings:
            table["runtime_identifier"] = worker_runtime
        tables[name] = table
    data["workers"] = tables
    if base is not None:
        data["autoscaling"] = base.autoscaling.model_dump()


def _group_bounds(table: dict[str, Any], given: dict[str, Any]) -> None:
    """A --group's bounds over a spec file's group: `count` alone is a fixed size; `min` or
    `max` keeps the file's other bound; autoscale is re-derived (resolve_bounds checks the
    combination, e.g. a count that is not the min)."""
    if not given:
        return
    previous = {key: table.pop(key, None) for key in ("count", "min", "max", "autoscale")}
    if "count" not in given:
        for key in ("min", "max"):
            if key not in given and previous[key] is not None:
                given[key] = previous[key]
    table.update(given)


# `--group` keys and the group settings they set.
GROUP_FLAG_KEYS = {
    "cpu": "cpu",
    "memory": "memory",
    "gpu": "nvidia_gpu",
    "count": "count",
    "min": "min",
    "max": "max",
    "accelerator": "accelerator",
    "accelerator_label": "accelerator_label_id",
    "runtime": "runtime_identifier",
}


def parse_group_flag(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:key=value,...` (one `--group`) as the group's name and its settings, e.g.
    `gpu:cpu=4,memory=16,gpu=1,min=0,max=4,accelerator=L40S,accelerator_label=12` ->
    ("gpu", {"cpu": "4", ..., "accelerator_label_id": "12"}). Keys: those of
    GROUP_FLAG_KEYS, `resource.<name>=<amount>` and `label.<key>=<value>` (values cannot
    contain commas). Values stay text: the spec's own rules check them. SpecError names
    the flag."""

    def refuse(message: str) -> SpecError:
        return SpecError([("--group", f"--group {text!r}: {message}")])

    name, colon, rest = text.strip().partition(":")
    problem = group_name_problem(name.strip())
    if problem:
        hint = " (write NAME:key=value,...)" if not colon and "=" in name else ""
        raise refuse(problem + hint)
    settings: dict[str, Any] = {}
    for item in rest.split(",") if rest.strip() else []:
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise refuse(f"{item.strip()!r} is not key=value")
        prefix, dot, sub = key.partition(".")
        if dot and prefix in ("resource", "label"):
            if not sub:
                raise refuse(f"{key!r} needs a name after the dot")
            table = settings.setdefault("resources" if prefix == "resource" else "labels", {})
            if sub in table:
                raise refuse(f"{key} is given twice")
            table[sub] = value
            continue
        field = GROUP_FLAG_KEYS.get(key)
        if field is None:
            known = ", ".join([*GROUP_FLAG_KEYS, "resource.<name>", "label.<key>"])
            raise refuse(f"unknown key {key!r} (keys: {known})")
        if field in settings:
            raise refuse(f"{key} is given twice")
        if not value:
            raise refuse(f"{key} has no value")
        settings[field] = value
    return name.strip(), settings


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
        if isinstance(item, Mapping):
            pairs = (f"{json.dumps(str(k))} = {value(v)}" for k, v in item.items())
            return "{" + ", ".join(pairs) + "}"
        return json.dumps(str(item))  # a JSON string is a valid TOML basic string

    def table(header: str, items: Mapping[str, Any]) -> list[str]:
        return [f"[{header}]", *(f"{key} = {value(item)}" for key, item in items.items()), ""]

    data = spec.model_dump()
    lines = [f"name = {value(data['name'])}", f"healing = {value(data['healing'])}", ""]
    lines += table("head", data["head"])
    if spec.group_names == (DEFAULT_GROUP,):
        lines += table("workers", data["workers"])
    else:
        for name, group in data["workers"].items():
            lines += table(f"workers.{name}", group)
        lines += table("autoscaling", data["autoscaling"])
    lines += table("ray", data["ray"])
    lines.append("[env]")
    lines.extend(f"{json.dumps(key)} = {value(item)}" for key, item in data["env"].items())
    return "\n".join(lines) + "\n"
