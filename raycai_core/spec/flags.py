"""A spec from the command line: spec_from_flags (over a spec file when given) and the
`--group NAME:key=value,...` flag (parse_group_flag)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raycai_core.naming import DEFAULT_GROUP
from raycai_core.spec.cluster import ClusterSpec, parse_spec
from raycai_core.spec.groups import group_name_problem
from raycai_core.spec.values import AUTOSCALING_KEYS, SpecError


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
    idle_suspend_minutes: float | None = None,
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
    if idle_suspend_minutes is not None:  # 0 turns a spec file's setting off
        data["idle_suspend_minutes"] = idle_suspend_minutes or None
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
