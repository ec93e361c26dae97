"""Worker groups in the spec: shapes, rules, the legacy one-table dump, flags."""

from __future__ import annotations

import itertools
import math

import pytest

from raycai_core.naming import group_hash
from raycai_core.spec import (
    MAX_GROUPS,
    ClusterSpec,
    SpecError,
    field_problem,
    group_field_problem,
    group_name_problem,
    load_spec_text,
    parse_group_flag,
    parse_spec,
    spec_from_flags,
)

RT = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-workbench-python3.11-standard:x"
GPU_RT = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-cuda:x"
HEAD = f'name = "demo"\n[head]\nruntime_identifier = "{RT}"\n'

TWO_GROUPS = (
    HEAD
    + f"""
[workers.cpu]
cpu = 4
memory = 16
count = 2

[workers.gpu]
cpu = 8
memory = 32
nvidia_gpu = 1
min = 0
max = 4
runtime_identifier = "{GPU_RT}"
accelerator = "L40S"
accelerator_label_id = 12
resources = {{ slot = 2 }}
labels = {{ "example.com/pool" = "big", tier = "" }}

[autoscaling]
idle_timeout_s = 60
upscaling_speed = 2
"""
).replace("[workers.cpu]", "[workers.cpu1]")


def two_groups() -> ClusterSpec:
    return load_spec_text(TWO_GROUPS)


def test_named_groups_keep_their_order_sizes_and_the_cluster_wide_autoscaler() -> None:
    spec = two_groups()
    assert spec.group_names == ("cpu1", "gpu")
    cpu, gpu = spec.group("cpu1"), spec.group("gpu")
    assert (cpu.cpu, cpu.memory, cpu.count, cpu.min, cpu.max, cpu.autoscale) == (
        4.0,
        16.0,
        2,
        2,
        2,
        False,
    )
    assert (gpu.count, gpu.min, gpu.max, gpu.autoscale, gpu.nvidia_gpu) == (0, 0, 4, True, 1)
    assert cpu.runtime_identifier == RT  # defaults to the head's
    assert gpu.runtime_identifier == GPU_RT
    assert (gpu.accelerator, gpu.accelerator_label_id) == ("L40S", "12")
    assert gpu.ray_resources() == {"slot": 2.0, "accelerator_type:L40S": 1.0}
    assert cpu.ray_resources() == {}
    assert gpu.labels == {"example.com/pool": "big", "tier": ""}
    assert (spec.autoscaling.idle_timeout_s, spec.autoscaling.upscaling_speed) == (60.0, 2.0)
    # Each group carries the cluster's values, for code that reads them from a group.
    assert all(g.idle_timeout_s == 60.0 and g.upscaling_speed == 2.0 for g in spec.groups.values())


def test_spec_workers_is_the_one_group_and_refuses_loudly_with_several() -> None:
    spec = two_groups()
    with pytest.raises(RuntimeError, match=r"cluster demo has several worker groups \(cpu1, gpu\)"):
        _ = spec.workers
    with pytest.raises(RuntimeError, match=r"use spec\.groups"):
        spec.with_workers(3)
    with pytest.raises(KeyError, match=r"no worker group 'tpu' \(its groups: cpu1, gpu\)"):
        spec.group("tpu")
    single = load_spec_text(HEAD + "[workers.gpu]\ncpu = 4\nnvidia_gpu = 1\n")
    assert single.workers is single.group("gpu")
    assert single.with_workers(3).workers.count == 3


def test_without_workers_or_with_one_table_the_group_is_named_worker() -> None:
    default = load_spec_text(HEAD)
    assert default.group_names == ("worker",)
    assert (default.workers.count, default.workers.cpu) == (2, 2.0)
    legacy = load_spec_text(HEAD + "[workers]\ncount = 3\ncpu = 4\nidle_timeout_s = 30\n")
    assert legacy.group_names == ("worker",)
    assert legacy.autoscaling.idle_timeout_s == 30.0 == legacy.workers.idle_timeout_s
    # Written as a named table, the `worker` group is the same cluster.
    named = load_spec_text(
        HEAD + "[workers.worker]\ncount = 3\ncpu = 4\n[autoscaling]\nidle_timeout_s = 30\n"
    )
    assert named == legacy
    # [autoscaling] with a one-table [workers]: the group carries its values.
    both = load_spec_text(HEAD + "[workers]\ncount = 3\n[autoscaling]\nidle_timeout_s = 45\n")
    assert both.workers.idle_timeout_s == 45.0


LEGACY_DUMP = {
    "name": "demo",
    "head": {"cpu": 1.0, "memory": 8.0, "nvidia_gpu": 0, "runtime_identifier": RT},
    "workers": {
        "cpu": 2.0,
        "memory": 4.0,
        "nvidia_gpu": 0,
        "runtime_identifier": RT,
        "count": 1,
        "min": 1,
        "max": 3,
        "autoscale": True,
        "idle_timeout_s": 90.0,
        "upscaling_speed": 1.0,
    },
    "ray": {
        "version": "2.60.0",
        "search": [".venv", "PATH"],
        "gcs_port": 6379,
        "client_port": 10001,
    },
    "env": {"FOO": "bar"},
    "healing": True,
}


def test_a_one_group_cluster_is_written_in_the_shape_an_older_raycai_reads() -> None:
    spec = spec_from_flags(
        name="demo",
        runtime=RT,
        workers=1,
        max_workers=3,
        idle_timeout=90,
        cpu=2,
        memory=4,
        head_cpu=1,
        env={"FOO": "bar"},
    )
    dumped = spec.model_dump(mode="json")
    assert dumped == LEGACY_DUMP
    assert parse_spec(LEGACY_DUMP) == spec  # what the previous release wrote reads back
    assert list(dumped) == list(LEGACY_DUMP) and list(dumped["workers"]) == list(
        LEGACY_DUMP["workers"]
    )
    assert spec.model_dump()["workers"] == LEGACY_DUMP["workers"]
    text = spec.to_toml()
    assert "[workers]\n" in text and "[autoscaling]" not in text and "accelerator" not in text
    # The new settings appear only when set.
    gpu = parse_spec(
        {
            **LEGACY_DUMP,
            "workers": {**LEGACY_DUMP["workers"], "nvidia_gpu": 1, "accelerator": "A100"},
        }
    )
    assert gpu.model_dump(mode="json")["workers"] == {
        **LEGACY_DUMP["workers"],
        "nvidia_gpu": 1,
        "accelerator": "A100",
    }


def test_several_groups_are_written_as_group_tables_and_autoscaling() -> None:
    dumped = two_groups().model_dump(mode="json")
    assert list(dumped) == ["name", "head", "workers", "autoscaling", "ray", "env", "healing"]
    assert list(dumped["workers"]) == ["cpu1", "gpu"]
    assert dumped["autoscaling"] == {"idle_timeout_s": 60.0, "upscaling_speed": 2.0}
    assert "idle_timeout_s" not in dumped["workers"]["gpu"]
    assert "accelerator" not in dumped["workers"]["cpu1"]
    assert dumped["workers"]["gpu"]["accelerator_label_id"] == "12"
    text = two_groups().to_toml()
    assert "[workers.cpu1]" in text and "[workers.gpu]" in text and "[autoscaling]" in text


ROUND_TRIPS = [
    HEAD,
    HEAD + "[workers]\ncount = 2\n",
    HEAD + "[workers]\nmin = 0\nmax = 3\nidle_timeout_s = 7.5\nupscaling_speed = 3\n",
    HEAD + '[workers]\nnvidia_gpu = 2\naccelerator = "A100"\naccelerator_label_id = "7"\n'
    'resources = {a = 0.5}\nlabels = {"x.y/z" = "v"}\n',
    HEAD + "[workers.gpu]\nnvidia_gpu = 1\n[autoscaling]\nidle_timeout_s = 20\n",
    TWO_GROUPS,
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_both_shapes_round_trip_through_json_and_toml(text: str) -> None:
    spec = load_spec_text(text)
    assert parse_spec(spec.model_dump(mode="json")) == spec
    assert parse_spec(spec.model_dump()) == spec
    assert load_spec_text(spec.to_toml()) == spec


GROUP_PROBLEMS = [
    (
        "[workers]\ncpu = 2\n[workers.gpu]\ncpu = 2\n",
        "workers",
        "both settings (cpu) and group tables ([workers.gpu])",
    ),
    (
        "[workers.gpu]\nidle_timeout_s = 30\n",
        "workers.gpu.idle_timeout_s",
        "one idle timeout for the cluster: set it in [autoscaling]",
    ),
    (
        "[workers.gpu]\nupscaling_speed = 2\n",
        "workers.gpu.upscaling_speed",
        "one upscaling speed for the cluster: set it in [autoscaling]",
    ),
    (
        "[workers]\nidle_timeout_s = 30\n[autoscaling]\nidle_timeout_s = 40\n",
        "workers.idle_timeout_s",
        "workers.idle_timeout_s (30) and autoscaling.idle_timeout_s (40) disagree",
    ),
    ("[autoscaling]\nidle_timeout_s = 0\n", "autoscaling.idle_timeout_s", "at least 1 s"),
    ("[autoscaling]\nupscaling_speed = -1\n", "autoscaling.upscaling_speed", "more than 0"),
    ("[autoscaling]\nidle = 3\n", "autoscaling.idle", "unknown setting 'idle' in [autoscaling]"),
    ("[workers.gpu]\ncpu = 0\n", "workers.gpu.cpu", "cpu must be more than 0 vCPU"),
    ("[workers.gpu]\nmin = 3\nmax = 2\n", "workers.gpu.max", "max (2) must be at least min (3)"),
    ("[workers.gpu]\ncpus = 2\n", "workers.gpu.cpus", "unknown setting 'cpus' in [workers.gpu]"),
    ("[workers]\ngpu = 3\n", "workers.gpu", "unknown setting 'gpu' in [workers]"),
    ("[workers]\ncpus = 3\n", "workers.cpus", "unknown setting 'cpus' in [workers]"),
    ("[workers.GPU]\ncpu = 2\n", "workers.GPU", "lower-case letters and digits"),
    ("[workers.1gpu]\ncpu = 2\n", "workers.1gpu", "start with a letter"),
    ('[workers."g-pu"]\ncpu = 2\n', "workers.g-pu", "lower-case letters and digits"),
    ("[workers.abcdefghijklm]\ncpu = 2\n", "workers.abcdefghijklm", "at most 12 characters"),
    ("[workers.head]\ncpu = 2\n", "workers.head", "'head' is reserved"),
    ("[workers.all]\ncpu = 2\n", "workers.all", "'all' is reserved"),
    ("[workers.accelerator]\ncpu = 2\n", "workers.accelerator", "is reserved"),
    ("[workers.cpu]\ncpu = 2\n", "workers.cpu", "group name 'cpu' is reserved"),
    ("[workers.memory]\ncpu = 2\n", "workers.memory", "is reserved"),
    ("[workers.min]\ncpu = 2\n", "workers.min", "is reserved"),
    ('[workers.gpu]\naccelerator = "L40S!"\n', "workers.gpu.accelerator", "accelerator type"),
    (f'[workers.gpu]\naccelerator = "{"A" * 65}"\n', "workers.gpu.accelerator", "64 characters"),
    ("[workers.gpu]\naccelerator = 3\n", "workers.gpu.accelerator", "must be text"),
    (
        '[workers.gpu]\naccelerator_label_id = "12"\n',
        "workers.gpu.accelerator_label_id",
        "needs nvidia_gpu of at least 1",
    ),
    (
        '[workers.gpu]\nnvidia_gpu = 1\naccelerator_label_id = "l40s"\n',
        "workers.gpu.accelerator_label_id",
        "(digits)",
    ),
    (
        "[workers.gpu]\nnvidia_gpu = 1\naccelerator_label_id = -3\n",
        "workers.gpu.accelerator_label_id",
        "(digits)",
    ),
    (
        "[workers.gpu]\nnvidia_gpu = 1\naccelerator_label_id = 99999999999999999999\n",
        "workers.gpu.accelerator_label_id",
        "(digits)",
    ),
    ("[workers.gpu]\nresources = {CPU = 1}\n", "workers.gpu.resources", "set cpu instead"),
    ("[workers.gpu]\nresources = {GPU = 1}\n", "workers.gpu.resources", "set nvidia_gpu instead"),
    ("[workers.gpu]\nresources = {memory = 1}\n", "workers.gpu.resources", "set memory"),
    (
        "[workers.gpu]\nresources = {object_store_memory = 1}\n",
        "workers.gpu.resources",
        "set memory instead",
    ),
    (
        '[workers.gpu]\nresources = {"accelerator_type:A100" = 1}\n',
        "workers.gpu.resources",
        "set accelerator instead",
    ),
    ("[workers.gpu]\nresources = {slot = 0}\n", "workers.gpu.resources", "more than 0"),
    ("[workers.gpu]\nresources = {slot = -1}\n", "workers.gpu.resources", "more than 0"),
    ("[workers.gpu]\nresources = {slot = nan}\n", "workers.gpu.resources", "finite"),
    ('[workers.gpu]\nresources = {slot = "x"}\n', "workers.gpu.resources", "must be a number"),
    ('[workers.gpu]\nresources = {"node:1.2.3.4" = 1}\n', "workers.gpu.resources", "start with"),
    ("[workers.gpu]\nresources = {a_group_b = 1}\n", "workers.gpu.resources", "_group_"),
    ("[workers.gpu]\nresources = 3\n", "workers.gpu.resources", "must be a table"),
    (
        '[workers.gpu]\nlabels = {"ray.io/accelerator-type" = "A100"}\n',
        "workers.gpu.labels",
        "starts with 'ray.io/': raycai and Ray set those",
    ),
    (
        '[workers.gpu]\nlabels = {"raycai/group" = "x"}\n',
        "workers.gpu.labels",
        "starts with 'raycai/'",
    ),
    ('[workers.gpu]\nlabels = {"-bad" = "x"}\n', "workers.gpu.labels", "label '-bad'"),
    ('[workers.gpu]\nlabels = {"Bad_/x" = "y"}\n', "workers.gpu.labels", "invalid prefix"),
    ('[workers.gpu]\nlabels = {zone = "a b"}\n', "workers.gpu.labels", "value 'a b'"),
    ("[workers.gpu]\nlabels = {zone = 3}\n", "workers.gpu.labels", "must be text"),
    ("[workers.gpu]\n[workers.gpu.resources]\nslot = 0\n", "workers.gpu.resources", "more than 0"),
]


@pytest.mark.parametrize(("text", "field", "expected"), GROUP_PROBLEMS)
def test_group_problems_name_the_group_and_the_field(text: str, field: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(HEAD + text)
    assert any(f == field and expected in message for f, message in caught.value.problems), (
        caught.value.problems
    )


def test_groups_are_given_under_workers_only() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"name": "demo", "head": {"runtime_identifier": RT}, "groups": {}})
    assert caught.value.problems == [
        ("groups", "unknown setting 'groups': worker groups are [workers.<group>] tables")
    ]


def test_at_least_one_and_at_most_sixteen_groups() -> None:
    tables = "".join(f"[workers.g{k}]\ncount = 1\n" for k in range(MAX_GROUPS + 1))
    with pytest.raises(SpecError, match=f"at most {MAX_GROUPS} worker groups"):
        load_spec_text(HEAD + tables)
    allowed = "".join(f"[workers.g{k}]\ncount = 1\n" for k in range(MAX_GROUPS))
    assert len(load_spec_text(HEAD + allowed).groups) == MAX_GROUPS
    # An empty [workers] table is the default group, never zero groups.
    assert load_spec_text(HEAD + "[workers]\n").group_names == ("worker",)


def test_groups_whose_subdomain_hashes_clash_are_refused() -> None:
    seen: dict[str, str] = {}
    for k in itertools.count():
        name = f"g{k}"
        clash = seen.setdefault(group_hash(name), name)
        if clash != name:
            break
    text = HEAD + f"[workers.{clash}]\ncount = 1\n[workers.{name}]\ncount = 1\n"
    with pytest.raises(SpecError, match=f"'{clash}' and '{name}' would share application"):
        load_spec_text(text)


def test_scaling_one_group_leaves_the_others() -> None:
    spec = two_groups()
    grown = spec.with_group_count("gpu", 6)
    assert (grown.group("gpu").min, grown.group("gpu").max) == (6, 6)
    assert grown.group("cpu1") == spec.group("cpu1")
    assert spec.with_group_count("gpu", 2).group("gpu").max == 4  # within bounds: max kept
    fixed = spec.with_group_count("cpu1", 5).group("cpu1")
    assert (fixed.count, fixed.min, fixed.max, fixed.autoscale) == (5, 5, 5, False)
    with pytest.raises(SpecError) as caught:
        spec.with_group_count("cpu1", -1)
    assert caught.value.problems[0][0] == "workers.cpu1.count"
    with pytest.raises(KeyError, match="no worker group 'tpu'"):
        spec.with_group_count("tpu", 1)
    legacy = load_spec_text(HEAD + "[workers]\ncount = 2\n")
    assert legacy.with_group_count("worker", 4) == legacy.with_workers(4)
    with pytest.raises(SpecError) as caught:
        legacy.with_workers(-1)
    assert caught.value.problems[0][0] == "workers.count"


def test_a_group_flag_is_parsed_to_settings() -> None:
    name, settings = parse_group_flag(
        "gpu:cpu=4,memory=16,gpu=1,min=0,max=4,accelerator=L40S,accelerator_label=12,"
        "runtime=img,resource.slot=2,label.example.com/pool=big"
    )
    assert name == "gpu"
    assert settings == {
        "cpu": "4",
        "memory": "16",
        "nvidia_gpu": "1",
        "min": "0",
        "max": "4",
        "accelerator": "L40S",
        "accelerator_label_id": "12",
        "runtime_identifier": "img",
        "resources": {"slot": "2"},
        "labels": {"example.com/pool": "big"},
    }
    assert parse_group_flag("cpu1") == ("cpu1", {})


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("", "group name is required"),
        (":cpu=2", "group name is required"),
        ("GPU:cpu=2", "lower-case letters"),
        ("head:cpu=2", "reserved"),
        ("cpu=2", "(write NAME:key=value,...)"),
        ("gpu:cpus=2", "unknown key 'cpus' (keys: cpu, memory, gpu"),
        ("gpu:cpu", "'cpu' is not key=value"),
        ("gpu:cpu=2,,max=3", "'' is not key=value"),
        ("gpu:cpu=2,cpu=3", "cpu is given twice"),
        ("gpu:cpu=", "cpu has no value"),
        ("gpu:resource.=1", "needs a name after the dot"),
        ("gpu:label.a=1,label.a=2", "label.a is given twice"),
    ],
)
def test_bad_group_flags_name_the_flag(flag: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_group_flag(flag)
    field, message = caught.value.problems[0]
    assert field == "--group" and message.startswith(f"--group {flag!r}: ")
    assert expected in message, message


def test_group_flags_build_the_groups_and_idle_timeout_goes_to_autoscaling() -> None:
    spec = spec_from_flags(
        name="demo",
        runtime=RT,
        groups=[
            "cpu1:cpu=4,memory=16,count=2",
            f"gpu:cpu=8,memory=32,gpu=1,min=0,max=4,accelerator=L40S,accelerator_label=12,"
            f"runtime={GPU_RT},resource.slot=2,label.example.com/pool=big,label.tier=",
        ],
        idle_timeout=60,
    )
    wanted = two_groups()
    assert spec.groups == {
        name: group.model_copy(update={"upscaling_speed": 1.0})
        for name, group in wanted.groups.items()
    }
    assert spec.autoscaling.idle_timeout_s == 60.0
    with pytest.raises(SpecError) as caught:
        spec_from_flags(name="demo", runtime=RT, groups=["gpu:cpu=0"])
    assert caught.value.problems == [("workers.gpu.cpu", "cpu must be more than 0 vCPU")]
    with pytest.raises(SpecError, match="group 'gpu' is given twice"):
        spec_from_flags(name="demo", runtime=RT, groups=["gpu:cpu=2", "gpu:cpu=4"])
    default_runtime = spec_from_flags(
        name="demo", runtime=RT, worker_runtime=GPU_RT, groups=["a:count=1", f"b:runtime={RT}"]
    )
    assert default_runtime.group("a").runtime_identifier == GPU_RT
    assert default_runtime.group("b").runtime_identifier == RT


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"cpu": 4}, "--cpu"),
        ({"memory": 4}, "--memory"),
        ({"gpu": 1}, "--gpu"),
        ({"workers": 2}, "--workers"),
        ({"min_workers": 0, "max_workers": 2}, "--min-workers/--max-workers"),
    ],
)
def test_group_flags_do_not_mix_with_the_single_group_sizing_flags(flags: dict, named: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_flags(name="demo", runtime=RT, groups=["gpu:gpu=1"], **flags)
    field, message = caught.value.problems[0]
    assert field == "--group" and named in message and "cannot be given with it" in message


def test_flags_over_a_spec_file_with_groups() -> None:
    base = two_groups()
    # A --group naming a file's group starts from it; a bound left out keeps the file's.
    tweaked = spec_from_flags(name="demo", base=base, groups=["gpu:max=8"])
    assert tweaked.group_names == ("gpu",)
    gpu = tweaked.group("gpu")
    assert (gpu.min, gpu.max, gpu.accelerator, gpu.runtime_identifier) == (0, 8, "L40S", GPU_RT)
    assert tweaked.autoscaling == base.autoscaling
    fixed = spec_from_flags(name="demo", base=base, groups=["gpu:count=2"]).group("gpu")
    assert (fixed.min, fixed.max, fixed.autoscale) == (2, 2, False)
    labelled = spec_from_flags(name="demo", base=base, groups=["gpu:label.zone=a"]).group("gpu")
    assert labelled.labels == {"example.com/pool": "big", "tier": "", "zone": "a"}
    # The file's one-table group becomes named groups with the file's autoscaler settings.
    legacy = load_spec_text(HEAD + "[workers]\ncount = 2\nidle_timeout_s = 30\n")
    replaced = spec_from_flags(name="demo", base=legacy, groups=["gpu:gpu=1,max=2"])
    assert replaced.group_names == ("gpu",) and replaced.autoscaling.idle_timeout_s == 30.0
    # Single-group flags: refused over several groups, applied to a file's only group.
    with pytest.raises(SpecError, match=r"several worker groups \(cpu1, gpu\).*--cpu"):
        spec_from_flags(name="demo", base=base, cpu=4)
    with pytest.raises(SpecError, match="--worker-runtime"):
        spec_from_flags(name="demo", base=base, worker_runtime=RT)
    assert spec_from_flags(name="demo", base=base, idle_timeout=5).autoscaling.idle_timeout_s == 5
    only = load_spec_text(HEAD + "[workers.gpu]\nnvidia_gpu = 1\nmin = 0\nmax = 2\n")
    moved = spec_from_flags(name="demo", base=only, cpu=6, max_workers=5, idle_timeout=9)
    assert moved.group_names == ("gpu",)
    assert (moved.workers.cpu, moved.workers.max, moved.autoscaling.idle_timeout_s) == (6, 5, 9)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("group", "gpu", None),
        ("group", "Gpu", "lower-case letters"),
        ("group", "memory", "reserved"),
        ("workers.accelerator", "L40S", None),
        ("workers.accelerator", "", None),
        ("workers.accelerator", "L 40", "accelerator type"),
        ("workers.accelerator_label_id", "12", None),
        ("workers.accelerator_label_id", "x1", "(digits)"),
        ("autoscaling.idle_timeout_s", "0", "at least 1 s"),
        ("autoscaling.upscaling_speed", "2", None),
    ],
)
def test_form_fields_for_groups(field: str, raw: str, expected: str | None) -> None:
    problem = field_problem(field, raw)
    assert problem is None if expected is None else (problem is not None and expected in problem)


def test_group_field_and_name_helpers() -> None:
    assert (
        group_field_problem("cpu", "0.5")
        == "a worker needs at least 1 vCPU (Ray schedules whole CPUs)"
    )
    assert group_field_problem("max", "3") is None
    assert group_name_problem("worker") is None  # the default group's name is allowed
    assert group_name_problem("") == "group name is required"
    assert math.isclose(
        parse_spec({"name": "d", "head": {"runtime_identifier": RT}}).workers.cpu, 2
    )
