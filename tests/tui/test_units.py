"""Pure parts of raycai-tui: backoff, healing decisions, keymaps, runtime choice, the reconciling
table, and the import hygiene that keeps the first frame fast."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from textual.app import App, ComposeResult

from raycai_core.cluster.records import NodeRecord
from raycai_core.cml.runtimes import session_runtime
from raycai_tui.backoff import Backoff
from raycai_tui.healing import MISSING_GRACE_S, HealPlanner, heal_reason
from raycai_tui.keymap import KeymapError, parse_keymap
from raycai_tui.widgets.keyed_table import Column, KeyedTable
from tests.tui.fixed_data import NOW, RUNTIMES, snapshot


def test_backoff_grows_on_failures_and_resets_on_success() -> None:
    backoff = Backoff(2.0, maximum=30.0)
    delays = [backoff.failed("HTTP 503", 100.0 + i) for i in range(6)]
    assert delays == [4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.stale and backoff.failing_since == 100.0 and backoff.reason == "HTTP 503"
    assert backoff.succeeded(200.0) == 2.0
    assert not backoff.stale and backoff.updated_at == 200.0 and backoff.failing_since is None


def summary(name: str):
    return next(s for s in snapshot().summaries if s.name == name)


def test_heal_reason_follows_the_desired_state_and_spec() -> None:
    assert heal_reason(summary("demo"), NOW) is None  # starting, not failed
    assert "failed" in (heal_reason(summary("etl-nightly"), NOW) or "")  # its head FAILED

    etl = summary("etl-nightly")
    assert etl.desired is not None
    off = etl.desired.spec.model_copy(update={"healing": False})
    no_healing = dataclasses.replace(etl, desired=dataclasses.replace(etl.desired, spec=off))
    assert heal_reason(no_healing, NOW) is None
    deleting = dataclasses.replace(etl, desired=dataclasses.replace(etl.desired, state="deleting"))
    assert heal_reason(deleting, NOW) is None

    demo = summary("demo")
    assert demo.desired is not None
    just_scaled = dataclasses.replace(demo.desired, updated_at=NOW - 10)
    one_worker_gone = dataclasses.replace(demo, members=demo.members[:2], desired=just_scaled)
    assert heal_reason(one_worker_gone, NOW) is None  # an `up` or `scale` may still add it
    later = NOW + MISSING_GRACE_S
    assert heal_reason(one_worker_gone, later) == "1 worker application(s) missing"


def test_heal_planner_waits_longer_after_each_attempt_and_skips_busy_clusters() -> None:
    planner = HealPlanner(first_wait=10.0, max_wait=40.0)
    summaries = [summary("etl-nightly")]
    assert planner.due(summaries, busy={"etl-nightly"}, now=NOW) == []
    assert planner.due(summaries, busy=(), now=NOW) == ["etl-nightly"]
    planner.attempted("etl-nightly", NOW)
    assert planner.due(summaries, busy=(), now=NOW + 9) == []
    assert planner.due(summaries, busy=(), now=NOW + 10) == ["etl-nightly"]
    planner.attempted("etl-nightly", NOW + 10)
    assert planner.due(summaries, busy=(), now=NOW + 29) == []
    assert planner.due(summaries, busy=(), now=NOW + 30) == ["etl-nightly"]


def test_keymap_files() -> None:
    text = '"clusters.new" = "a"\n[keymap]\n"cluster.scale_up" = ["plus", "u"]\n'
    assert parse_keymap(text) == {"cluster.scale_up": "plus,u"}  # [keymap] wins when present
    assert parse_keymap('"clusters.new" = "a"') == {"clusters.new": "a"}
    with pytest.raises(KeymapError, match=r"clusters\.new"):
        parse_keymap('"clusters.new" = 3')
    with pytest.raises(KeymapError, match="not valid TOML"):
        parse_keymap("clusters.new = ")


def test_session_runtime_matches_the_session_metadata() -> None:
    env = {
        "ML_RUNTIME_EDITOR": "PBJ Workbench",
        "ML_RUNTIME_KERNEL": "Python 3.10",
        "ML_RUNTIME_EDITION": "Standard",
        "ML_RUNTIME_FULL_VERSION": "2025.09.1-b5",
    }
    assert session_runtime(RUNTIMES, env) is RUNTIMES[1]
    assert session_runtime(RUNTIMES, {}) is None
    assert session_runtime(RUNTIMES, {**env, "ML_RUNTIME_KERNEL": "R 4.4"}) is None


class Table(KeyedTable):
    COLUMNS = (Column("node", "NODE", 10), Column("value", "VALUE", 10))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Table()


def rows(count: int, changed: set[int] = frozenset(), skip: set[int] = frozenset()):
    return [
        (f"w{i}", (f"w{i}", "new" if i in changed else "old"))
        for i in range(count)
        if i not in skip
    ]


async def test_keyed_table_updates_in_place_and_keeps_the_cursor_row() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 20)) as pilot:
        table = app.query_one(Table)
        table.reconcile(rows(50))
        await pilot.pause()
        table.select_key("w30")
        await pilot.pause()
        assert table.selected_key == "w30"

        table.reconcile(rows(50, changed={30, 31}, skip={2, 3}))  # two rows above the cursor go
        await pilot.pause()
        assert table.selected_key == "w30" and table.row_count == 48
        assert str(table.get_cell("w30", "value")) == "new"

        table.reconcile([*rows(50, skip={2, 3}), ("w2", ("w2", "back"))])  # comes back last...
        await pilot.pause()
        assert table.keys[-1] == "w2" and table.selected_key == "w30"
        table.reconcile(rows(50))  # ...and returns to its place
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows][:4] == ["w0", "w1", "w2", "w3"]
        assert table.selected_key == "w30"


async def test_a_key_selected_before_its_row_arrives_is_selected_when_it_does() -> None:
    """Esc from the create form while the cluster is created: its row is not listed yet; the
    cursor goes to it with the poll that brings it, once (later polls keep the user's row)."""
    app = TableApp()
    async with app.run_test(size=(40, 20)) as pilot:
        table = app.query_one(Table)
        table.reconcile(rows(3))
        await pilot.pause()
        table.select_key("w1")
        table.select_key("new")  # not listed yet: the cursor stays
        await pilot.pause()
        assert table.selected_key == "w1"
        table.reconcile([("new", ("new", "old")), *rows(3)])
        await pilot.pause()
        assert table.selected_key == "new"
        table.select_key("w2")
        table.reconcile([("new", ("new", "old")), *rows(3)])
        await pilot.pause()
        assert table.selected_key == "w2"


async def test_a_cursor_the_user_moved_meanwhile_stays_when_the_awaited_row_arrives() -> None:
    """Esc from the create form, then down to another cluster before the new row comes: the
    row's arrival leaves the cursor where the user put it."""
    app = TableApp()
    async with app.run_test(size=(40, 20)) as pilot:
        table = app.query_one(Table)
        table.reconcile(rows(3))
        table.focus()
        await pilot.pause()
        table.select_key("new")
        await pilot.press("down")
        assert table.selected_key == "w1"
        table.reconcile([("new", ("new", "old")), *rows(3)])
        await pilot.pause()
        assert table.selected_key == "w1"


def test_the_app_module_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, raycai_tui.app\n"
        "heavy = ('ray', 'httpx', 'pydantic', 'aiohttp',\n"
        "         'raycai_core.cluster', 'raycai_core.cml')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == ""


async def test_a_keymap_remaps_bindings_by_id() -> None:
    from raycai_tui.app import RaycaiApp, Settings

    app = RaycaiApp(Settings(poll_s=0, keymap={"clusters.new": "a", "clusters.filter": "f"}))
    async with app.run_test(size=(100, 30)):
        bindings = app.screen.active_bindings
        assert bindings["a"].binding.id == "clusters.new" and "n" not in bindings
        assert bindings["f"].binding.id == "clusters.filter" and "slash" not in bindings


def test_command_line(tmp_path) -> None:
    from click.testing import CliRunner

    from raycai_tui.app import main

    runner = CliRunner()
    shown = runner.invoke(main, ["--help"])
    assert shown.exit_code == 0
    for option in ("--local", "--host", "--project", "--readonly", "--no-heal", "--keymap"):
        assert option in shown.output
    bad = tmp_path / "keys.toml"
    bad.write_text('"clusters.new" = 3\n')
    refused = runner.invoke(main, ["--keymap", str(bad)])
    assert refused.exit_code == 2 and "clusters.new" in refused.output


class ConfirmApp(App[None]):
    answer: bool | None = None

    def on_mount(self) -> None:
        from raycai_tui.screens.confirm import ConfirmScreen

        items = [f"raycai-demo-worker-{k}" for k in range(1, 40)]

        def answered(yes: bool | None) -> None:
            self.answer = yes

        self.push_screen(ConfirmScreen("Delete demo", "Delete cluster demo?", items), answered)


async def test_tab_and_arrows_move_between_cancel_and_delete() -> None:
    app = ConfirmApp()
    async with app.run_test(size=(100, 30)) as pilot:
        focused = []
        for key in ("tab", "tab", "right", "left", "down", "up", "shift+tab", "shift+tab"):
            await pilot.press(key)
            focused.append(app.focused.id if app.focused else None)
        assert focused == ["yes", "no", "yes", "no", "yes", "no", "yes", "no"]
        await pilot.press("pagedown", "tab", "enter")  # the long list scrolls; focus stays
        assert app.answer is True


def test_the_application_column_keeps_the_end_of_long_names() -> None:
    from raycai_core.cluster.view import merge_cluster
    from raycai_tui.widgets.apps_table import APP_WIDTH, view_rows
    from tests.tui.fixed_data import desired, member

    name = "mycluster-for-the-nightly-etl"
    members = [member(name, node, "running", 1, 1, 60) for node in ("worker-9", "worker-12")]
    view = merge_cluster(name, desired(name, 12, 600), members, {}, None, [])
    cells = {key: str(cells[2]) for key, cells in view_rows(view)}
    assert cells["worker-12"].endswith("-worker-12") and cells["worker-9"].endswith("-worker-9")
    assert all(len(text) <= APP_WIDTH for text in cells.values())
    assert cells["worker-12"].startswith("…")


def test_scale_requests_merge_only_when_the_result_is_the_same() -> None:
    from raycai_core.cluster.types import ScaleTarget
    from raycai_tui.operations import ScaleRequest, merge_scale

    def req(text: str, allow_busy: bool = False) -> ScaleRequest:
        return ScaleRequest(ScaleTarget.parse(text), allow_busy)

    assert merge_scale(req("+1"), req("+1")) == req("+2")
    assert merge_scale(req("-1", True), req("-2", True)) == req("-3", True)
    assert merge_scale(req("-1", True), req("-1")) == req("-2")  # asks again
    assert merge_scale(req("3"), req("+1")) == req("4")
    assert merge_scale(req("1"), req("-2")) == req("0")
    assert merge_scale(req("+2"), req("5", True)) == req("5", True)
    # From 0 workers, -1 then +1 gives 1, while a merged 0 would give 0: kept apart.
    assert merge_scale(req("-1"), req("+1")) is None
    assert merge_scale(req("+1"), req("-1")) is None


def test_the_cluster_title_says_who_keeps_an_autoscaled_cluster() -> None:
    import time

    from raycai_core.cluster.desired import Desired
    from raycai_core.cluster.records import AutoscalerRecord
    from raycai_core.cluster.view import merge_cluster
    from raycai_core.spec import spec_from_flags
    from raycai_tui.screens.cluster import title_text
    from tests.tui.fixed_data import RUNTIME, demo_members

    spec = spec_from_flags(
        name="demo", runtime=RUNTIME, min_workers=0, max_workers=4, cpu=2, memory=8
    )
    desired = Desired(spec=spec)
    now = time.time()

    def title(state: str) -> str:
        head = NodeRecord(
            node="head",
            role="head",
            phase="running",
            updated_at=now,
            autoscaler=AutoscalerRecord(state=state, reason="no CML API key in the head's env"),
        )
        view = merge_cluster("demo", desired, demo_members(), {"head": head}, None, None)
        return title_text(view, healing=True).plain

    assert "kept by the cluster's autoscaler" in title("running")
    assert "kept by raycai healing" in title("off")
    fixed_spec = spec_from_flags(name="demo", runtime=RUNTIME, workers=2, cpu=2, memory=8)
    fixed = merge_cluster("demo", Desired(spec=fixed_spec), [], {}, None, None)
    assert "healing on" in title_text(fixed, healing=True).plain


def test_before_the_first_ray_answer_the_launchers_records_say_who_joined() -> None:
    import time

    from raycai_core.cluster.view import merge_cluster
    from tests.tui.fixed_data import demo_members, desired

    now = time.time()
    records = {
        node: NodeRecord(node=node, role="worker", phase=phase, updated_at=now)
        for node, phase in (("worker-1", "joined"), ("worker-2", "waiting-for-head"))
    }
    members = [m for m in demo_members() if m.app.status.value == "running"]
    view = merge_cluster("demo", desired("demo", 2, 60), members, records, None, None)
    unknown = view.with_ray(None, None)
    assert not unknown.ray_known
    assert unknown.row("worker-1").joined  # its record says so, and its launcher is alive
    answered_empty = view.with_ray([], None)  # Ray answered and lists no node
    assert answered_empty.ray_known and not answered_empty.row("worker-1").joined


async def test_the_apps_threads_are_daemons_that_quitting_never_waits_for() -> None:
    """A thread stuck in a blocking read must not keep raycai-tui alive after `q`."""
    import asyncio
    import threading

    from raycai_tui.app import RaycaiApp, Settings

    app = RaycaiApp(Settings(poll_s=0))
    async with app.run_test():
        thread = await asyncio.to_thread(threading.current_thread)
    assert thread.daemon and thread.name == "raycai-io"


async def test_a_sub_title_change_while_a_header_lacks_its_title_does_not_end_the_app() -> None:
    """Textual 8's Header crashes the app (NoMatches) when the sub-title changes while its
    title widget is not mounted, as on a screen being composed or dismissed when raycai-tui
    connects; RaycaiHeader does not."""
    from textual.app import App
    from textual.widgets._header import HeaderTitle

    from raycai_tui.widgets.header import RaycaiHeader

    class Bare(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield RaycaiHeader()

    app = Bare()
    async with app.run_test() as pilot:
        await app.query_one(HeaderTitle).remove()
        app.sub_title = "connected"
        await pilot.pause()
        assert app.is_running and app._exception is None
