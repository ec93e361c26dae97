"""Worker bounds: a fixed count is min = max = count; min..max turns Ray's autoscaler on."""

from __future__ import annotations

import pytest

from raycai_core.spec import (
    DEFAULT_IDLE_TIMEOUT_S,
    SpecError,
    bounds_problem,
    field_problem,
    load_spec_text,
    parse_spec,
    spec_from_flags,
)

RT = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-workbench-python3.11-standard:x"


def spec(**workers: object):
    return parse_spec({"name": "demo", "head": {"runtime_identifier": RT}, "workers": workers})


def test_a_fixed_count_is_min_equals_max_and_no_autoscaler() -> None:
    group = spec(count=3).workers
    assert (group.count, group.min, group.max, group.autoscale) == (3, 3, 3, False)
    assert group.idle_timeout_s == DEFAULT_IDLE_TIMEOUT_S and group.upscaling_speed == 1.0
    default = spec().workers
    assert (default.count, default.min, default.max, default.autoscale) == (2, 2, 2, False)


def test_bounds_turn_the_autoscaler_on_and_count_reads_as_the_minimum() -> None:
    group = spec(min=1, max=4, idle_timeout_s=5, upscaling_speed=2).workers
    assert (group.count, group.min, group.max, group.autoscale) == (1, 1, 4, True)
    assert group.idle_timeout_s == 5.0 and group.upscaling_speed == 2.0
    only_max = spec(max=2).workers
    assert (only_max.min, only_max.max, only_max.autoscale) == (0, 2, True)
    # An explicit autoscale with min = max: a fixed size that the autoscaler keeps.
    kept = spec(min=2, max=2, autoscale=True).workers
    assert (kept.count, kept.autoscale) == (2, True)


def test_old_specs_and_their_dumps_read_back_equal() -> None:
    text = f'name = "demo"\n[head]\nruntime_identifier = "{RT}"\n[workers]\ncount = 2\n'
    old = load_spec_text(text)
    assert old.workers.min == old.workers.max == 2
    for each in (old, spec(min=0, max=3, idle_timeout_s=7.5), spec(min=2, max=2, autoscale=True)):
        assert load_spec_text(each.to_toml()) == each
        assert parse_spec(each.model_dump(mode="json")) == each


@pytest.mark.parametrize(
    ("workers", "field", "expected"),
    [
        ({"min": 3, "max": 2}, "workers.max", "max (2) must be at least min (3)"),
        ({"min": -1, "max": 2}, "workers.min", "min must be at least 0"),
        ({"min": 0, "max": 501}, "workers.max", "max must be at most 500"),
        ({"min": 0.5, "max": 2}, "workers.min", "whole number"),
        ({"count": 2, "min": 1, "max": 3}, "workers", "count (2) and min (1) disagree"),
        ({"min": 0, "max": 2, "autoscale": False}, "workers", "autoscale is false"),
        ({"autoscale": "yes"}, "workers.autoscale", "true or false"),
        ({"min": 0, "max": 2, "idle_timeout_s": 0}, "workers.idle_timeout_s", "at least 1 s"),
        ({"idle_timeout_s": 1e9}, "workers.idle_timeout_s", "at most"),
        ({"idle_timeout_s": "soon"}, "workers.idle_timeout_s", "must be a number"),
        ({"upscaling_speed": 0}, "workers.upscaling_speed", "more than 0"),
        ({"upscaling_speed": float("nan")}, "workers.upscaling_speed", "finite"),
    ],
)
def test_bad_bounds_are_refused_with_the_field_and_a_specific_message(
    workers: dict[str, object], field: str, expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        spec(**workers)
    assert any(f == field and expected in message for f, message in caught.value.problems), (
        caught.value.problems
    )


def test_flags_set_bounds_over_a_spec_file() -> None:
    base = spec(min=1, max=4, idle_timeout_s=60)
    fixed = spec_from_flags(name="demo", base=base, workers=3).workers
    assert (fixed.min, fixed.max, fixed.autoscale) == (3, 3, False)
    grown = spec_from_flags(name="demo", base=base, max_workers=8).workers
    assert (grown.min, grown.max, grown.autoscale, grown.idle_timeout_s) == (1, 8, True, 60.0)
    ranged = spec_from_flags(name="demo", runtime=RT, workers=1, max_workers=2, idle_timeout=5)
    assert (ranged.workers.min, ranged.workers.max, ranged.workers.idle_timeout_s) == (1, 2, 5.0)
    plain = spec_from_flags(name="demo", runtime=RT, min_workers=0, max_workers=2).workers
    assert (plain.count, plain.min, plain.max, plain.autoscale) == (0, 0, 2, True)
    with pytest.raises(SpecError, match="disagree"):
        spec_from_flags(name="demo", runtime=RT, workers=2, min_workers=1, max_workers=3)
    with pytest.raises(SpecError, match=r"max \(1\) must be at least min \(2\)"):
        spec_from_flags(name="demo", runtime=RT, min_workers=2, max_workers=1)


def test_a_manual_scale_moves_min_and_max_only_when_it_must() -> None:
    auto = spec(min=1, max=4)
    assert (auto.with_workers(2).workers.min, auto.with_workers(2).workers.max) == (2, 4)
    up = auto.with_workers(6).workers
    assert (up.count, up.min, up.max, up.autoscale) == (6, 6, 6, True)
    down = auto.with_workers(0).workers
    assert (down.min, down.max) == (0, 4)
    fixed = spec(count=2).with_workers(5).workers
    assert (fixed.min, fixed.max, fixed.autoscale) == (5, 5, False)
    with pytest.raises(SpecError):
        auto.with_workers(-1)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("workers.min", "-1", "at least 0"),
        ("workers.max", "2.5", "whole number"),
        ("workers.max", "4", None),
        ("workers.idle_timeout_s", "0.5", "at least 1 s"),
        ("workers.idle_timeout_s", "300", None),
        ("workers.upscaling_speed", "-1", "more than 0"),
    ],
)
def test_form_fields_for_bounds_share_the_rules(field: str, raw: str, expected: str | None) -> None:
    problem = field_problem(field, raw)
    assert problem is None if expected is None else (problem is not None and expected in problem)


def test_form_bounds_together() -> None:
    assert bounds_problem("3", "2") == "max (2) must be at least min (3)"
    assert bounds_problem("1", "4") is None
    assert bounds_problem("x", "4") is None  # the field itself says why
