"""Nodes of a cluster: NodeSpec (one application's size and runtime) and WorkerGroupSpec
(one group of workers: sizes, fixed count or autoscaler bounds, accelerator, resources, labels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from raycai_core.spec.values import (
    ACCELERATOR_RESOURCE_PREFIX,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_UPSCALING_SPEED,
    GIB,
    MAX_CPU,
    MAX_GPU,
    MAX_MEMORY_GB,
    MAX_WORKERS,
    OBJECT_STORE_FRACTION,
    RAY_MIN_OBJECT_STORE_BYTES,
    _accelerator_value,
    _finite,
    _idle_timeout_value,
    _label_id_value,
    _labels_value,
    _number,
    _resources_value,
    _upscaling_speed_value,
    _whole,
)


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
