"""The cluster spec: what a user asks for, validated once, from TOML, CLI flags or the TUI form.

Every rule lives in this package so that the three entry points give the same specific
messages. Modules, each importing only those above it:

  values.py    limits, name patterns, SpecError, the checks of single values
  nodes.py     NodeSpec (one application) and WorkerGroupSpec (one group of workers)
  settings.py  cluster-wide settings: RaySettings, AutoscalingSettings, ServeSettings
  groups.py    worker-group names and the two shapes of [workers] (in and out)
  tomlout.py   spec_to_toml
  cluster.py   ClusterSpec; parse_spec, load_spec_text, load_spec_file
  flags.py     spec_from_flags, parse_group_flag (`--group NAME:key=value,...`)
  form.py      the TUI form's per-field checks

Import from `raycai_core.spec`: the names below are its API.
"""

from raycai_core.spec.cluster import (
    ClusterSpec,
    load_spec_file,
    load_spec_text,
    name_problem,
    parse_spec,
)
from raycai_core.spec.flags import GROUP_FLAG_KEYS, parse_group_flag, spec_from_flags
from raycai_core.spec.form import FORM_FIELDS, bounds_problem, field_problem, group_field_problem
from raycai_core.spec.groups import RESERVED_GROUP_NAMES, group_name_problem
from raycai_core.spec.nodes import NodeSpec, WorkerGroupSpec, resolve_bounds
from raycai_core.spec.settings import AutoscalingSettings, RaySettings, ServeSettings
from raycai_core.spec.tomlout import spec_to_toml
from raycai_core.spec.values import (
    AUTOSCALING_KEYS,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_RAY_VERSION,
    DEFAULT_UPSCALING_SPEED,
    GIB,
    GROUP_NAME_MAX,
    MAX_GROUPS,
    MAX_WORKERS,
    NAME_MAX,
    RAY_VERSION_RE,
    RUNTIME_HINT,
    SpecError,
)

__all__ = [
    "AUTOSCALING_KEYS",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_RAY_VERSION",
    "DEFAULT_UPSCALING_SPEED",
    "FORM_FIELDS",
    "GIB",
    "GROUP_FLAG_KEYS",
    "GROUP_NAME_MAX",
    "MAX_GROUPS",
    "MAX_WORKERS",
    "NAME_MAX",
    "RAY_VERSION_RE",
    "RESERVED_GROUP_NAMES",
    "RUNTIME_HINT",
    "AutoscalingSettings",
    "ClusterSpec",
    "NodeSpec",
    "RaySettings",
    "ServeSettings",
    "SpecError",
    "WorkerGroupSpec",
    "bounds_problem",
    "field_problem",
    "group_field_problem",
    "group_name_problem",
    "load_spec_file",
    "load_spec_text",
    "name_problem",
    "parse_group_flag",
    "parse_spec",
    "resolve_bounds",
    "spec_from_flags",
    "spec_to_toml",
]
