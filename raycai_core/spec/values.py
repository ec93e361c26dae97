"""The spec's limits and the checks of single values, shared by the models of the package.

Constants (limits, name patterns, reserved names), SpecError, and the validators that turn one
raw value (TOML, a flag's text, a form field's text) into a number or a checked setting with a
specific message. The `_`-names are the package's own: its modules share them, importers do not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

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
# Names that would read as something other than a cluster in commands, paths and app names
# (`raycai serve deploy|delete|status` are subcommands where a cluster name may also stand).
RESERVED_NAMES = frozenset(
    {"all", "head", "worker", "workers", "local", "default", "none", "null", "raycai", "ray"}
    | {"deploy", "delete", "status"}
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


def _idle_timeout_value(value: Any) -> Any:
    value = _finite(_number(value, "idle_timeout_s"), "idle_timeout_s")
    if value < MIN_IDLE_TIMEOUT_S:
        raise ValueError(f"idle_timeout_s must be at least {MIN_IDLE_TIMEOUT_S:g} s")
    if value > MAX_IDLE_TIMEOUT_S:
        raise ValueError(f"idle_timeout_s must be at most {MAX_IDLE_TIMEOUT_S:g} s (a week)")
    return value


# idle_suspend_minutes: the head suspends the cluster after this long with nothing to do.
MIN_IDLE_SUSPEND_MINUTES = 0.1  # 6 s: the head's check needs a few rounds
MAX_IDLE_SUSPEND_MINUTES = 7 * 24 * 60.0  # a week


def _idle_suspend_value(value: Any) -> Any:
    """Minutes (fractions allowed) or None/empty: off."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    what = "idle_suspend_minutes"
    value = _finite(_number(value, what), what)
    if value < MIN_IDLE_SUSPEND_MINUTES:
        raise ValueError(
            f"{what} must be at least {MIN_IDLE_SUSPEND_MINUTES:g} (minutes); "
            "leave it out to never suspend"
        )
    if value > MAX_IDLE_SUSPEND_MINUTES:
        raise ValueError(f"{what} must be at most {MAX_IDLE_SUSPEND_MINUTES:g} (a week)")
    return float(value)


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
