"""Helpers and fixtures for the raycai-tui tests (import the fixtures into a test module).

`fake_ray` puts a stand-in Ray into the local workspace's project virtualenv (`.venv`, the
launchers' first search entry): tests/fixtures/stand_in_ray.py, no Ray process. Its head
listens on the GCS port and serves a dashboard on the app port (so the head application turns
RUNNING) that lists the head and every worker that joined (`ray start --address` connects to
the head's GCS port and sends its node), ALIVE while the worker runs and DEAD after; the
worker prints Ray's "started" line, so its launcher reports `joined`. The Ray panel, the Ray
column and READY therefore work in the fast tests; nothing is in use unless `set_ray_usage`
says so (a busy worker); log files and jobs are not served (404).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen

from raycai_core.cluster.lifecycle import ClusterManager
from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.models import Application
from raycai_core.local import WorkspaceHandle
from raycai_core.spec import ClusterSpec, spec_from_flags
from raycai_core.target import Target
from raycai_tui.app import RaycaiApp, Settings
from tests.fixtures.patience import Deadline, patience
from tests.fixtures.stand_in_ray import DOWN_FILE, USAGE_FILE
from tests.fixtures.workspace import RUNTIME

FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then echo 2.60.0; exit 0; fi
exec {python} "$@"
"""
STAND_IN_RAY = Path(__file__).resolve().parent.parent / "fixtures" / "stand_in_ray.py"


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_ray(local_workspace: WorkspaceHandle) -> WorkspaceHandle:
    bin_dir = local_workspace.project_dir / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    _executable(bin_dir / "python", FAKE_PYTHON.format(python=sys.executable))
    _executable(bin_dir / "ray", f"#!{sys.executable}\n" + STAND_IN_RAY.read_text())
    return local_workspace


def set_ray_usage(handle: WorkspaceHandle, used: dict[str, dict[str, float]]) -> None:
    """What the stand-in Ray reports in use from now on, by node (application) name, e.g.
    `{"raycai-demo-worker-1": {"CPU": 1}}` for a busy worker; `{}` for idle nodes."""
    path = handle.project_dir / ".venv" / USAGE_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(used))
    temporary.replace(path)


def set_ray_down(handle: WorkspaceHandle, down: bool) -> None:
    """Make every stand-in Ray dashboard of the project answer 503 (down) or answer again;
    the heads stay RUNNING and the workers join all the same."""
    path = handle.project_dir / ".venv" / DOWN_FILE
    if down:
        path.touch()
    else:
        path.unlink(missing_ok=True)


@pytest.fixture
def tui_workspace(fake_ray: WorkspaceHandle) -> Iterator[WorkspaceHandle]:
    """The local workspace with the fake Ray, and no CML_* / CDSW_* in the environment."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(("CML_", "CDSW_", "ML_RUNTIME"))}
    for key in saved:
        del os.environ[key]
    yield fake_ray
    os.environ.update(saved)


def target_of(handle: WorkspaceHandle) -> Target:
    return Target(handle.credentials(), handle.project_dir, "local")


@pytest.fixture(autouse=True)
def notifications_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every notification an app raised, kept for `notified` after its toast expired.

    Textual drops a notification from `App._notifications` once its timeout has passed, and
    in CI's starved lane a 4 s toast can expire between the key press and the test's look.
    """
    notify = App.notify

    def keeping(self: App[Any], message: str, **options: Any) -> None:
        self.__dict__.setdefault("_notified", []).append(str(message))
        notify(self, message, **options)

    monkeypatch.setattr(App, "notify", keeping)


def notified(app: App[Any], text: str) -> bool:
    """`text` was in a notification of `app` (expired or not)."""
    return any(text in message for message in app.__dict__.get("_notified", []))


def make_app(handle: WorkspaceHandle, *, poll_s: float = 0.5, **settings: bool) -> RaycaiApp:
    """The app on this workspace; `settings` are Settings' flags (readonly, heal)."""
    return RaycaiApp(Settings(poll_s=poll_s, **settings), target=target_of(handle))


def small_spec(name: str = "demo", workers: int = 1) -> ClusterSpec:
    return spec_from_flags(
        name=name,
        runtime=RUNTIME,
        workers=workers,
        cpu=1,
        memory=1,
        head_cpu=1,
        head_memory=1,
    )


def client_for(handle: WorkspaceHandle) -> CMLClient:
    retry = RetryPolicy(attempts=6, initial_wait=0.05, max_wait=0.5, deadline=20.0)
    return CMLClient(handle.credentials(), retry=retry)


async def cluster_apps(handle: WorkspaceHandle) -> list[Application]:
    async with client_for(handle) as cml:
        return await cml.list_applications({"name": "raycai-"})


async def until(
    pilot: Pilot[object], predicate: Callable[[], object], what: str, timeout: float = 20.0
) -> object:
    """Let the app run until `predicate()` is truthy; fail with `what` after `timeout` (as
    this run's patience scales it)."""
    deadline = Deadline(timeout, every=0.05)
    while not (result := predicate()):
        if deadline.passed():
            raise AssertionError(f"timed out after {deadline.seconds} s waiting for {what}")
        await pilot.pause(0.05)
    return result


ScreenType = TypeVar("ScreenType", bound=Screen[Any])


async def until_screen(
    pilot: Pilot[object], kind: type[ScreenType], what: str, timeout: float = 20.0
) -> ScreenType:
    """Wait until a `kind` screen is on top and mounted, and return it. `app.screen` is the
    new screen as soon as it is pushed or switched to, before its children are composed: a
    query on it then finds nothing (CI's starved runs showed it)."""
    app = pilot.app
    await until(
        pilot, lambda: isinstance(app.screen, kind) and app.screen.is_mounted, what, timeout
    )
    screen = app.screen
    assert isinstance(screen, kind)
    return screen


async def say_yes(pilot: Pilot[object], timeout: float = 20.0) -> None:
    """Answer the dialog on screen with `y`, once it is shown (a yes typed before the
    question was drawn does not count: see ConfirmScreen)."""
    from raycai_tui.screens.confirm import ConfirmScreen

    app = pilot.app
    await until(
        pilot,
        lambda: isinstance(app.screen, ConfirmScreen) and app.screen.answerable,
        "the question on screen",
        timeout,
    )
    await pilot.press("y")


async def until_async(
    pilot: Pilot[object],
    predicate: Callable[[], Awaitable[object]],
    what: str,
    timeout: float = 20.0,
) -> object:
    """`until` for a predicate that returns an awaitable."""
    deadline = Deadline(timeout, every=0.1)
    while not (result := await predicate()):
        if deadline.passed():
            raise AssertionError(f"timed out after {deadline.seconds} s waiting for {what}")
        await pilot.pause(0.1)
    return result


async def create_cluster(handle: WorkspaceHandle, name: str = "demo", workers: int = 1) -> None:
    """`up` without waiting for the workers; it still waits for the head's address, and says
    why the head did not publish one (not the 900 s default of a real cluster)."""
    async with client_for(handle) as cml:
        manager = ClusterManager(cml, handle.project_dir)
        await manager.up(small_spec(name, workers), wait=False, timeout=patience(60))
