"""Suspend and resume without Ray: the head's idle decision fed with Ray 2.60's real answers
(tests/fixtures/ray_idle: captured once from a real head with a driver, a Ray Client
driver, a job, a task + detached actor + placement group, a Serve application and Serve
after its application was deleted), the idle clock, the spec option, and the head-side
copies of the core's rules (the suspend plan, the desired-state file)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from raycai_core.cluster.apps import ClusterApp
from raycai_core.cluster.desired import read_desired, write_desired
from raycai_core.cluster.healing import plan_heal
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.suspend import plan_suspend, suspended_note
from raycai_core.cluster.view import merge_cluster
from raycai_core.cml.models import Application, AppStatus
from raycai_core.launcher import idle_suspend
from raycai_core.launcher.render import launcher_config, render_cluster
from raycai_core.naming import app_environment
from raycai_core.spec import (
    SpecError,
    field_problem,
    load_spec_text,
    parse_spec,
    spec_from_flags,
    spec_to_toml,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ray_idle"
BASE = {"name": "demo", "head": {"runtime_identifier": "img", "cpu": 1, "memory": 2}}


def answers(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# -- the idle decision on Ray's real answers -------------------------------------------------


@pytest.mark.parametrize(
    "capture",
    [
        "idle",  # a fresh head
        "driver_gone",  # a driver that ended: its job SUCCEEDED
        "job_done",  # a finished job: its supervisor is gone too
        "serve_deleted",  # Serve's controller and proxy alone (no application)
    ],
)
def test_an_idle_cluster_is_idle(capture: str) -> None:
    assert idle_suspend.busy_reason(answers(capture)) is None


@pytest.mark.parametrize(
    ("capture", "reason"),
    [
        ("driver", "driver "),  # ray.init() on the head's GCS: a DRIVER job RUNNING
        ("client_driver", "driver "),  # a Ray Client driver (raycai.connect, a notebook)
        ("client_driver_gone", "driver "),  # Ray Client keeps it for its reconnect grace
        ("job", "job "),  # a submitted job RUNNING (its supervisor is Ray's own actor)
        ("task_actor_pg", "driver "),  # its driver is still connected
        ("detached_actor_left", "actor A is ALIVE"),  # a detached actor outlives its driver
        ("serve", "Serve application hello deployed"),
    ],
)
def test_work_keeps_a_cluster_awake(capture: str, reason: str) -> None:
    why = idle_suspend.busy_reason(answers(capture))
    assert why is not None and why.startswith(reason), why


def test_each_kind_of_work_alone_keeps_it_awake() -> None:
    """The task, actor and placement group of the capture each suffice, with no driver."""
    capture = answers("task_actor_pg")
    quiet = answers("idle")
    for kind, reason in (
        ("tasks", "task slow is RUNNING"),
        ("actors", "actor A is ALIVE"),
        ("placement_groups", "placement group "),
    ):
        one = dict(quiet, **{kind: capture[kind]})
        why = idle_suspend.busy_reason(one)
        assert why is not None and why.startswith(reason), (kind, why)


def test_ray_own_actors_do_not_count_but_a_missing_answer_does() -> None:
    job = answers("job")
    supervisor_only = dict(job, jobs=[])  # the supervisor actor alone
    assert [a["class_name"] for a in idle_suspend.state_rows(job["actors"])] == ["JobSupervisor"]
    assert idle_suspend.busy_reason(supervisor_only) is None
    for key in ("jobs", "tasks", "actors", "placement_groups", "serve"):
        broken = dict(answers("idle"), **{key: {"error": "HTTP 503"}})
        assert idle_suspend.busy_reason(broken) is not None, key


def test_the_idle_clock_restarts_after_any_busy_round() -> None:
    clock = idle_suspend.IdleClock(60, now=0)
    assert not clock.idle(30)
    assert clock.idle(60)  # idle since the head started
    clock.busy()
    assert not clock.idle(100) and not clock.idle(159)
    assert clock.idle(160)
    assert idle_suspend.poll_interval(12) == 3 and idle_suspend.poll_interval(3600) == 30


def test_a_node_on_its_way_into_ray_keeps_the_cluster_awake() -> None:
    """`up`, a scale or a resume waits for it; a launcher gone silent does not count."""
    records = {
        "head": {"phase": "running", "updated_at": 100, "heartbeat_s": 30},
        "worker-1": {"phase": "waiting-for-head", "updated_at": 95, "heartbeat_s": 30},
        "worker-2": {"phase": "starting-ray", "updated_at": 10, "heartbeat_s": 30},
        "worker-3": {"phase": "joined", "updated_at": 100, "heartbeat_s": 30},
    }
    assert idle_suspend.arriving_nodes(records, now=100) == ["worker-1"]
    assert idle_suspend.arriving_nodes({"head": records["head"]}, now=100) == []


class Answers:
    """A dashboard that gives one capture, counting the rounds that asked it."""

    def __init__(self, capture: str | None) -> None:
        self.capture = capture
        self.asked = 0

    def answers(self) -> dict[str, Any]:
        self.asked += 1
        if self.capture is None:
            raise idle_suspend.Unavailable("/api/jobs/: connection refused")
        return answers(self.capture)


def test_a_round_skips_while_the_lock_is_held_and_asks_the_dashboard_last(
    tmp_path: Path,
) -> None:
    paths = ClusterPaths(tmp_path, "demo")
    paths.nodes_dir.mkdir(parents=True)
    write_desired(paths, parse_spec({**BASE, "idle_suspend_minutes": 1}))
    root = str(paths.root)
    idle = Answers("idle")
    with idle_suspend.cluster_lock(root) as mine, idle_suspend.cluster_lock(root) as locked:
        assert mine and not locked  # a scale, heal or down holds it: this round is skipped
        assert idle_suspend.round_busy(root, locked, idle, 100) == (
            "another operation holds the cluster's lock"
        )
    assert idle.asked == 0
    assert idle_suspend.round_busy(root, True, idle, 100) == "" and idle.asked == 1
    assert idle_suspend.round_busy(root, True, Answers("job"), 100).startswith("job ")
    gone = idle_suspend.round_busy(root, True, Answers(None), 100)
    assert gone.startswith("the dashboard did not answer")
    record = {"phase": "starting-ray", "updated_at": 99, "heartbeat_s": 30}
    paths.node_record("worker-1").write_text(json.dumps(record))
    assert idle_suspend.round_busy(root, True, idle, 100) == "on its way into Ray: worker-1"
    idle_suspend.mark_suspended(root, "idle", 100)
    assert idle_suspend.round_busy(root, True, idle, 100) == "the cluster is suspended"
    assert idle.asked == 1


def test_state_queries_ask_only_for_live_rows() -> None:
    query = idle_suspend.state_query("tasks")
    assert query.startswith("/api/v0/tasks?")
    assert query.count("filter_predicates=%21%3D") == 2 and "FINISHED" in query


# -- the spec option ---------------------------------------------------------------------------


def test_idle_suspend_minutes_is_off_by_default_and_takes_fractions() -> None:
    plain = parse_spec(BASE)
    assert plain.idle_suspend_minutes is None
    assert "idle_suspend_minutes" not in plain.model_dump()  # an older raycai reads it
    assert "idle_suspend" not in launcher_config(plain)
    spec = parse_spec({**BASE, "idle_suspend_minutes": "0.5"})
    assert spec.idle_suspend_minutes == 0.5
    assert load_spec_text(spec_to_toml(spec)) == spec
    settings = launcher_config(spec)["idle_suspend"]
    assert settings["minutes"] == 0.5 and settings["keep"] == {"worker": 2}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "at least 0.1"),
        (-1, "at least 0.1"),
        ("soon", "must be a number"),
        (True, "not true/false"),
        (float("inf"), "finite"),
        (1e9, "at most"),
    ],
)
def test_a_bad_idle_suspend_minutes_is_refused_clearly(value: object, problem: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, "idle_suspend_minutes": value})
    assert "idle_suspend_minutes" in str(refused.value) and problem in str(refused.value)


def test_the_flag_and_the_form_field() -> None:
    spec = spec_from_flags(name="demo", runtime="img", idle_suspend_minutes=15)
    assert spec.idle_suspend_minutes == 15
    off = spec_from_flags(name="demo", base=spec, idle_suspend_minutes=0)
    assert off.idle_suspend_minutes is None  # 0 turns a spec file's setting off
    assert field_problem("idle_suspend_minutes", "") is None
    assert field_problem("idle_suspend_minutes", "2.5") is None
    assert "at least" in (field_problem("idle_suspend_minutes", "0.01") or "")


def test_the_idle_program_is_rendered_only_when_set(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "idle_suspend_minutes": 10})
    paths = render_cluster(tmp_path, spec).paths
    program = paths.root / "raycai_idle_suspend.py"
    assert program.read_bytes() == Path(idle_suspend.__file__).read_bytes()
    render_cluster(tmp_path, parse_spec(BASE))
    assert not program.exists()


# -- the head-side copies of the core's rules --------------------------------------------------


def _app(node: str, status: AppStatus = AppStatus.RUNNING, cluster: str = "demo") -> ClusterApp:
    app = Application.model_validate(
        {
            "id": f"id-{cluster}-{node}",
            "name": f"raycai-{cluster}-{node}",
            "status": status.value,
            "environment": app_environment(cluster, node),
            "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat(),
        }
    )
    return ClusterApp(app=app, cluster=cluster, node=node)


def _raw(member: ClusterApp) -> dict[str, Any]:
    """The application as the API's JSON, as the head-side program reads it."""
    return json.loads(member.app.model_dump_json(by_alias=True))


@pytest.mark.parametrize(
    ("spec_data", "members"),
    [
        # fixed size 2: both stay (stopped), a third left by a scale-down goes
        (
            {"workers": {"count": 2}},
            "head=running worker-1=running worker-2=stopped worker-3=running",
        ),
        # autoscaled 1..4 with three running: the minimum stays, the rest go
        (
            {"workers": {"min": 1, "max": 4}},
            "head=running worker-1=running worker-2=running worker-4=starting",
        ),
        # two groups, one no longer in the spec; the head already stopped
        (
            {"workers": {"data": {"count": 1}, "gpu": {"min": 0, "max": 2}}},
            "head=stopped data-1=running gpu-1=running old-1=running",
        ),
    ],
)
def test_the_head_plans_a_suspend_as_the_core_does(spec_data: dict[str, Any], members: str) -> None:
    spec = parse_spec({**BASE, **spec_data})
    pairs = [item.split("=") for item in members.split()]
    apps = [_app(node, AppStatus(status)) for node, status in pairs]
    apps.append(_app("worker-1", cluster="other"))  # another cluster's: never touched
    core = plan_suspend(spec, [a for a in apps if a.cluster == "demo"])
    keep = {name: group.count for name, group in spec.groups.items()}
    delete, stop, head = idle_suspend.plan_suspend([_raw(a) for a in apps], "demo", keep)
    assert [n for n, _ in delete] == [m.node for m in core.delete]
    assert [n for n, _ in stop] == [m.node for m in core.stop]
    core_head = core.head.node if core.head else None
    assert (head is not None and idle_suspend.normalise_status(head["status"]) != "stopped") == (
        core_head == "head"
    )


def test_the_head_marks_the_cluster_suspended_as_the_core_reads_it(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "idle_suspend_minutes": 1})
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    write_desired(paths, spec)
    assert idle_suspend.mark_suspended(str(paths.root), "idle for 1 min", 1_700_000_000.0)
    desired = read_desired(paths)
    assert desired is not None and desired.state == "suspended" and desired.spec == spec
    assert desired.suspension is not None and desired.suspension.by == "head"
    assert desired.suspension.reason == "idle for 1 min"
    note = suspended_note(desired, now=1_700_000_000.0 + 600)
    assert note == "suspended since 2023-11-14 22:13 UTC (10 min ago): idle for 1 min"
    assert not idle_suspend.mark_suspended(str(paths.root), "again", 0)  # only when active
    write_desired(paths, spec, "suspended")  # a rewrite keeps why and when
    kept = read_desired(paths)
    assert kept is not None and kept.suspension == desired.suspension


def test_the_lock_held_elsewhere_is_seen_without_waiting(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    with idle_suspend.cluster_lock(str(tmp_path / "c")) as first:
        assert first
        with idle_suspend.cluster_lock(str(tmp_path / "c")) as second:
            assert not second
    with idle_suspend.cluster_lock(str(tmp_path / "c")) as again:
        assert again


def test_healing_leaves_a_suspended_cluster_alone(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "workers": {"count": 1}})
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    write_desired(paths, spec, "suspended")
    desired = read_desired(paths)
    members = [_app("head", AppStatus.STOPPED), _app("worker-1", AppStatus.STOPPED)]
    view = merge_cluster("demo", desired, members, {}, None, None, now=0.0)
    assert plan_heal(view, desired, 0.0).steps == []
    write_desired(paths, spec)  # the same, active: both restart
    active = read_desired(paths)
    assert [s.kind for s in plan_heal(view, active, 0.0).steps] == ["restart", "restart"]


class FakeWorkspace:
    """The CML calls a suspend makes, on a list of applications (stop takes effect at once);
    `on_stop` runs after each stop (e.g. a resume meanwhile)."""

    def __init__(self, apps: list[dict[str, Any]], on_stop: Any = None) -> None:
        self.apps = {a["id"]: a for a in apps}
        self.calls: list[str] = []
        self.on_stop = on_stop

    def list_apps(self) -> list[dict[str, Any]]:
        return [dict(a) for a in self.apps.values()]

    def delete(self, app_id: str) -> None:
        self.calls.append(f"delete {self.apps.pop(app_id)['environment']['RAYCAI_NODE']}")

    def stop(self, app_id: str) -> None:
        self.apps[app_id]["status"] = "APPLICATION_STOPPED"
        self.calls.append(f"stop {self.apps[app_id]['environment']['RAYCAI_NODE']}")
        if self.on_stop is not None:
            self.on_stop()


@pytest.mark.parametrize("resumed_meanwhile", [False, True])
def test_the_heads_suspend_stops_workers_then_itself_unless_resumed_meanwhile(
    tmp_path: Path, resumed_meanwhile: bool
) -> None:
    spec = parse_spec({**BASE, "workers": {"count": 1}, "idle_suspend_minutes": 1})
    paths = ClusterPaths(tmp_path, "demo")
    paths.root.mkdir(parents=True)
    write_desired(paths, spec)
    idle_suspend.mark_suspended(str(paths.root), "idle for 1 min", 100.0)
    apps = [_raw(_app(node)) for node in ("head", "worker-1", "worker-2")]

    def resume() -> None:
        if resumed_meanwhile:
            write_desired(paths, spec)  # `raycai resume` stores active first

    api = FakeWorkspace(apps, on_stop=resume)
    idle_suspend.suspend(str(paths.root), "demo", {"worker": 1}, api)  # type: ignore[arg-type]
    if resumed_meanwhile:
        assert api.calls == ["delete worker-2", "stop worker-1"]  # the head keeps running
    else:
        assert api.calls == ["delete worker-2", "stop worker-1", "stop head"]
