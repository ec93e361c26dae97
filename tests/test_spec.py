"""Cluster spec validation: one table of hostile and invalid inputs, each with its message."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from raycai_core.spec import (
    ClusterSpec,
    SpecError,
    field_problem,
    load_spec_file,
    load_spec_text,
    name_problem,
    parse_spec,
    spec_from_flags,
)

RT = (
    "docker.repository.cloudera.com/cloudera/cdsw/"
    "ml-runtime-pbj-workbench-python3.11-standard:2025.09.1-b5"
)

BAD_NAMES = [
    ("", "name is required"),
    ("Demo", "lower-case letters"),
    ("démo", "lower-case letters"),
    ("名前", "lower-case letters"),
    ("a/b", "lower-case letters"),
    ("..", "lower-case letters"),
    ("a\\b", "lower-case letters"),
    ("a b", "lower-case letters"),
    ("a;rm -rf /", "lower-case letters"),
    ("$(reboot)", "lower-case letters"),
    ("`id`", "lower-case letters"),
    ("a'b", "lower-case letters"),
    ('a"b', "lower-case letters"),
    ("x\ny", "lower-case letters"),
    ("__import__('os')", "lower-case letters"),
    ("1abc", "start with a letter"),
    ("-abc", "start with a letter"),
    ("abc-", "not end with a hyphen"),
    ("a--b", "two hyphens"),
    ("a" * 200, "at most 32 characters (200 given)"),
    ("a" * 33, "at most 32 characters"),
    ("head", "reserved"),
    ("ray", "reserved"),
    ("all", "reserved"),
    ("a\x00b", "lower-case letters"),
]


@pytest.mark.parametrize(("name", "expected"), BAD_NAMES)
def test_bad_cluster_names_are_refused_with_a_specific_message(name: str, expected: str) -> None:
    problem = name_problem(name)
    assert problem is not None and expected in problem
    with pytest.raises(SpecError) as caught:
        spec_from_flags(name=name, runtime=RT)
    assert expected in str(caught.value)
    assert caught.value.problems[0][0] == "name"


BAD_SIZES = [
    ({"cpu": -1}, "workers.cpu", "more than 0"),
    ({"cpu": 0}, "workers.cpu", "more than 0"),
    ({"cpu": 0.5}, "workers.cpu", "at least 1 vCPU"),
    ({"cpu": math.nan}, "workers.cpu", "finite"),
    ({"cpu": math.inf}, "workers.cpu", "finite"),
    ({"cpu": 1e9}, "workers.cpu", "at most 256"),
    ({"memory": 0}, "workers.memory", "at least 0.5 GB"),
    ({"memory": -8}, "workers.memory", "at least 0.5 GB"),
    ({"memory": math.nan}, "workers.memory", "finite"),
    ({"memory": 1e12}, "workers.memory", "at most 4096"),
    ({"gpu": -1}, "workers.nvidia_gpu", "cannot be negative"),
    ({"gpu": 0.5}, "workers.nvidia_gpu", "whole GPUs"),
    ({"gpu": 1.25}, "workers.nvidia_gpu", "whole GPUs"),
    ({"gpu": 99}, "workers.nvidia_gpu", "at most 16"),
    ({"workers": -1}, "workers.count", "at least 0"),
    ({"workers": 10_000}, "workers.count", "at most 500"),
    ({"workers": 2.5}, "workers.count", "whole number"),
    ({"head_cpu": 0}, "head.cpu", "more than 0"),
    ({"head_memory": math.inf}, "head.memory", "finite"),
    ({"head_gpu": -2}, "head.nvidia_gpu", "cannot be negative"),
    ({"ray_version": "latest"}, "ray.version", "look like 2.60.0"),
    ({"ray_version": "2.60.0; rm -rf /"}, "ray.version", "look like 2.60.0"),
    ({"runtime": "has space"}, "head.runtime_identifier", "without spaces"),
    ({"env": {"PATH": "/evil"}}, "env", "set by raycai or CML"),
    ({"env": {"RAY_AUTH_MODE": "disabled"}}, "env", "set by raycai or CML"),
    ({"env": {"CDSW_IP_ADDRESS": "1.2.3.4"}}, "env", "set by raycai or CML"),
    ({"env": {"BAD NAME": "x"}}, "env", "not a valid name"),
    ({"env": {"X": "a\x00b"}}, "env", "NUL"),
]


@pytest.mark.parametrize(("flags", "field", "expected"), BAD_SIZES)
def test_bad_sizes_and_settings_from_flags(flags: dict, field: str, expected: str) -> None:
    args = {"name": "demo", "runtime": RT, **flags}
    with pytest.raises(SpecError) as caught:
        spec_from_flags(**args)
    fields = [f for f, _ in caught.value.problems]
    assert field in fields, caught.value.problems
    assert expected in str(caught.value)


def test_missing_runtime_names_who_provides_it() -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_flags(name="demo")
    message = str(caught.value)
    assert "runtime_identifier is required" in message
    assert "--runtime" in message and "[head]" in message


BAD_TOML = [
    ('name = "demo"\n[head]\ncpu = "two"\nruntime_identifier = "r"\n', "head.cpu", "number"),
    (
        'name = "demo"\n[head]\nruntime_identifier = "r"\ncpus = 2\n',
        "head.cpus",
        "unknown setting 'cpus' in [head]",
    ),
    (
        'name = "demo"\n[wrokers]\ncount = 2\n[head]\nruntime_identifier = "r"\n',
        "wrokers",
        "unknown setting 'wrokers'",
    ),
    ('[head]\nruntime_identifier = "r"\n', "name", "is required"),
    ('name = 5\n[head]\nruntime_identifier = "r"\n', "name", "must be text"),
    ('name = "demo"\nhead = 3\n', "head", "table of settings"),
    (
        'name = "demo"\n[head]\nruntime_identifier = "r"\n[workers]\ncount = true\n',
        "workers.count",
        "not true/false",
    ),
    (
        'name = "demo"\n[head]\nruntime_identifier = "r"\n[workers]\nnvidia_gpu = 0.5\n',
        "workers.nvidia_gpu",
        "whole GPUs",
    ),
    (
        'name = "demo"\n[head]\nruntime_identifier = "r"\n[ray]\ngcs_port = 80\n',
        "ray.gcs_port",
        "at least 1024",
    ),
    (
        'name = "demo"\n[head]\nruntime_identifier = "r"\n[ray]\nsearch = ["../../etc"]\n',
        "ray.search",
        "inside the project",
    ),
    ('name = "demo"\n[head]\nruntime_identifier = "r"\n[env]\nX = 1\n', "env.X", "wrong type"),
    ("name = 'demo\n", "", "not valid TOML"),
    ('name = "demo"\n[head]\n', "", "runtime_identifier is required"),
]


@pytest.mark.parametrize(("text", "field", "expected"), BAD_TOML)
def test_bad_toml_files(text: str, field: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text)
    assert expected in str(caught.value), str(caught.value)
    assert any(f == field for f, _ in caught.value.problems), caught.value.problems


def test_missing_spec_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec_file(tmp_path / "nope.toml")


def test_a_valid_spec_round_trips_through_toml_and_defaults_the_worker_runtime() -> None:
    spec = spec_from_flags(
        name="demo",
        runtime=RT,
        workers=3,
        cpu=2,
        memory=4,
        gpu=1,
        head_cpu=1,
        env={"FOO": 'x"y\nz'},
    )
    assert spec.workers.runtime_identifier == RT
    assert load_spec_text(spec.to_toml()) == spec
    assert spec.with_workers(5).workers.count == 5
    with pytest.raises(SpecError):
        spec.with_workers(-1)


def test_ray_units_are_whole_and_split_memory() -> None:
    spec = parse_spec(
        {"name": "demo", "head": {"cpu": 1.5, "memory": 10, "runtime_identifier": RT}}
    )
    assert spec.head.ray_num_cpus == 1
    assert spec.head.ray_memory_bytes + spec.head.ray_object_store_bytes == 10 * 2**30


def test_spec_is_frozen() -> None:
    spec = spec_from_flags(name="demo", runtime=RT)
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, ClusterSpec)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("workers.cpu", "0.5", "at least 1 vCPU"),
        ("workers.cpu", "abc", "must be a number"),
        ("workers.count", "1.5", "whole number"),
        ("workers.count", "", "required"),
        ("head.nvidia_gpu", "0.5", "whole GPUs"),
        ("head.memory", "nan", "finite"),
        ("name", "My Cluster", "lower-case"),
        ("runtime", "  ", "runtime is required"),
        ("workers.cpu", "4", None),
        ("name", "demo-1", None),
    ],
)
def test_form_fields_use_the_same_rules(field: str, raw: str, expected: str | None) -> None:
    problem = field_problem(field, raw)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_serve_listen_defaults_to_loopback_and_is_written_only_when_not_default() -> None:
    plain = parse_spec({"name": "demo", "head": {"runtime_identifier": "r"}})
    assert plain.serve.listen == "loopback"
    assert "serve" not in plain.model_dump()  # an older raycai reads the cluster.json
    assert "[serve]" not in plain.to_toml()
    pod = parse_spec(
        {"name": "demo", "head": {"runtime_identifier": "r"}, "serve": {"listen": "pod"}}
    )
    assert pod.model_dump()["serve"] == {"listen": "pod"}
    assert load_spec_text(pod.to_toml()) == pod
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {"name": "demo", "head": {"runtime_identifier": "r"}, "serve": {"listen": "all"}}
        )
    assert caught.value.problems[0][0] == "serve.listen"
