"""`raycai local start|status|env|stop` as a user runs them, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.patience import Deadline
from tests.fixtures.workspace import RUNTIME, session_pids, write_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RAYCAI = [sys.executable, "-m", "raycai_core.cli.main"]


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CML_", "CDSW_", "RAYCAI_LOCAL_DIR"))
    }


def raycai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RAYCAI, *args], capture_output=True, text=True, timeout=60, env=_env())


def _servers(data_dir: Path) -> list[int]:
    """Pids of `raycai_core.local serve` processes for this data dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "raycai_core.local" in argv and str(data_dir) in argv:
            found.append(int(entry.name))
    return found


def _wait(predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = Deadline(timeout, every=0.05)
    while not (value := predicate()):
        assert not deadline.passed(), f"timed out waiting for {predicate}"
        time.sleep(0.05)
    return value


class Api:
    """A small sync client from workspace.json, as a script of the user would do."""

    def __init__(self, data_dir: Path) -> None:
        info = json.loads((data_dir / "workspace.json").read_text())
        self.project_id = info["project_id"]
        self.project_dir = Path(info["project_dir"])
        self.http = httpx.Client(
            base_url=info["url"], headers={"Authorization": f"Bearer {info['api_key']}"}
        )

    def close(self) -> None:
        self.http.close()

    def create(self, name: str, script: str) -> str:
        body = {"name": name, "subdomain": name, "script": script, "runtime_identifier": RUNTIME}
        response = self.http.post(f"/api/v2/projects/{self.project_id}/applications", json=body)
        response.raise_for_status()
        return response.json()["id"]

    def info(self, app_id: str) -> dict:
        apps = self.http.get("/_local/apps").json()["apps"]
        return next(a for a in apps if a["id"] == app_id)

    def running_pid(self, app_id: str) -> int:
        return _wait(
            lambda: (i := self.info(app_id))["status"] == "APPLICATION_RUNNING" and i["pid"]
        )


@pytest.fixture
def data_dir(tmp_path) -> Iterator[Path]:
    directory = tmp_path / "local"
    yield directory
    raycai("local", "stop", "--data-dir", str(directory))


def test_help_on_every_command():
    from click.testing import CliRunner

    from raycai_core.cli.main import cli

    for command in ([], ["start"], ["status"], ["stop"], ["env"]):
        result = CliRunner().invoke(cli, ["local", *command, "--help"], prog_name="raycai")
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_start_status_env_stop(data_dir):
    args = ["local", "start", "--data-dir", str(data_dir), "--restart-delay", "0.1"]
    # Two starts at once launch one server.
    racing = [
        subprocess.Popen([*RAYCAI, *args], stdout=subprocess.PIPE, text=True, env=_env())
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in racing]
    assert [p.returncode for p in racing] == [0, 0]
    assert sorted("already running" in out for out in outputs) == [False, True]
    assert len(_servers(data_dir)) == 1

    info_path = data_dir / "workspace.json"
    assert info_path.stat().st_mode & 0o777 == 0o600
    info = json.loads(info_path.read_text())
    again = raycai(*args)
    assert again.returncode == 0 and "already running" in again.stdout
    assert json.loads(info_path.read_text())["pid"] == info["pid"]

    status = raycai("local", "status", "--data-dir", str(data_dir))
    assert status.returncode == 0
    assert info["url"] in status.stdout and info["project_id"] in status.stdout
    port = info["url"].rsplit(":", 1)[1]
    assert f"http://<subdomain>.localhost:{port}" in status.stdout
    for output in [*outputs, again.stdout, status.stdout, status.stderr]:
        assert info["api_key"] not in output

    check = (
        "import asyncio, os\n"
        "from raycai_core.cml.client import CMLClient\n"
        "from raycai_core.credentials import resolve_credentials\n"
        "async def main():\n"
        "    async with CMLClient(resolve_credentials()) as client:\n"
        "        key = await client.validate_key()\n"
        "        print(key.valid, os.environ['CML_PROJECT_ID'], os.environ['RAYCAI_PROJECT_DIR'])\n"
        "asyncio.run(main())\n"
    )
    command = " ".join(RAYCAI) + f" local env --data-dir '{data_dir}'"
    evaluated = subprocess.run(
        ["bash", "-c", f'eval "$({command})" && exec {sys.executable} -c "$0"', check],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.split() == ["True", info["project_id"], info["project_dir"]]

    api = Api(data_dir)
    script = write_app(api.project_dir, "serve_with_child")
    app_pid = api.running_pid(api.create("cli-app", script))
    api.close()
    assert len(session_pids(app_pid)) >= 1

    stopped = raycai("local", "stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert session_pids(app_pid) == [] and _servers(data_dir) == []
    assert not info_path.exists()
    assert raycai("local", "status", "--data-dir", str(data_dir)).returncode == 1
    not_running = raycai("local", "env", "--data-dir", str(data_dir))
    assert not_running.returncode == 1 and "not running" in not_running.stderr


@pytest.mark.slow  # a crash and its recovery: several seconds of real processes
def test_start_after_a_crash_kills_leftovers_and_restarts_apps(data_dir):
    assert raycai("local", "start", "--data-dir", str(data_dir)).returncode == 0
    api = Api(data_dir)
    app_id = api.create("survivor", write_app(api.project_dir, "serve"))
    old_pid = api.running_pid(app_id)
    api.close()
    (server,) = _servers(data_dir)
    os.kill(server, signal.SIGKILL)  # no chance to stop its apps
    _wait(lambda: not _servers(data_dir))
    assert session_pids(old_pid) != []  # the app outlived its workspace

    assert raycai("local", "start", "--data-dir", str(data_dir)).returncode == 0
    assert session_pids(old_pid) == []
    api = Api(data_dir)
    assert api.running_pid(app_id) != old_pid
    api.close()


def test_start_reports_a_server_that_cannot_start(data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "state.json").write_text("{ not json")
    # The data dir may come from RAYCAI_LOCAL_DIR instead of --data-dir.
    result = subprocess.run(
        [*RAYCAI, "local", "start", "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "RAYCAI_LOCAL_DIR": str(data_dir)},
    )
    assert result.returncode == 1
    assert "exited at start" in result.stderr and "state.json" in result.stderr
    assert _servers(data_dir) == []
