"""The rendered launchers as real processes, with hand-made CDSW_* variables.

Without Ray: a fake `ray` (records its argv and environment, blocks until SIGTERM) in a fake
project virtualenv whose `python` reports a chosen version, and a plain TCP listener standing
in for the head's GCS. With Ray (marked `ray`): a real head and worker, a head crash and the
worker's rejoin.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.launcher.render import read_token, render_cluster
from raycai_core.spec import parse_spec
from tests.fixtures.patience import Deadline

pytestmark = pytest.mark.integration

FAKE_RAY = """#!{python}
import json, os, signal, socket, subprocess, sys, time

def note(**entry):
    entry["pid"] = os.getpid()
    with open({record!r}, "a") as handle:
        handle.write(json.dumps(entry) + "\\n")

def stop(signum, frame):
    note(event="sigterm")
    sys.exit(1)

if sys.argv[1:2] == ["drain-node"]:  # Ray's drain: the raylet exits once idle (not busy)
    note(event="drain", argv=sys.argv[1:], env_token=os.environ.get("RAY_AUTH_TOKEN_PATH"))
    if os.path.exists({exit_file!r} + ".refuse-drain"):
        print("click.exceptions: The drain request is not accepted: no", flush=True)
        sys.exit(1)
    if not os.path.exists({exit_file!r} + ".busy"):
        try:
            os.kill(int(open({exit_file!r} + ".raylet").read()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    sys.exit(0)
note(event="start", argv=sys.argv[1:], env=dict(os.environ), pgid=os.getpgrp(), sid=os.getsid(0))
signal.signal(signal.SIGTERM, stop)
if os.path.exists({exit_file!r} + ".raylet-id") and "--head" not in sys.argv:
    # A stand-in raylet in our process group, named and flagged like Ray's own.
    raylet = subprocess.Popen(
        ["raylet", "-c", "import time\\nwhile True: time.sleep(0.05)",
         "--node_id=" + open({exit_file!r} + ".raylet-id").read()],
        executable=sys.executable,
    )
    with open({exit_file!r} + ".raylet", "w") as handle:
        handle.write(str(raylet.pid))
if "--head" in sys.argv and os.path.exists({exit_file!r} + ".dashboard-occupied"):
    # Another program takes the dashboard port before this start checks it (as a second head
    # on the same machine can): Ray refuses to start.
    os.unlink({exit_file!r} + ".dashboard-occupied")
    port = sys.argv[sys.argv.index("--dashboard-port") + 1]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time\\n"
         "s = socket.socket()\\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n"
         "s.bind(('', int(sys.argv[1])))\\ns.listen()\\nprint('held', flush=True)\\n"
         "time.sleep(120)", port],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    holder.stdout.readline()
    with open({exit_file!r} + ".holder", "w") as handle:
        handle.write(str(holder.pid))
    print(f"ValueError: Failed to bind to 0.0.0.0:{{port}} because it's already occupied.",
          flush=True)
    sys.exit(1)
if "--head" in sys.argv:  # stand in for the GCS and the dashboard
    gcs = socket.socket()
    gcs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    gcs.bind((sys.argv[sys.argv.index("--node-ip-address") + 1],
              int(sys.argv[sys.argv.index("--port") + 1])))
    gcs.listen()
    import http.server, threading

    class Dashboard(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen = {{"path": self.path, "authorization": self.headers.get("Authorization")}}
            body = json.dumps(seen).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def serve_dashboard():  # once `.dashboard-wait` is gone (as Ray's, some seconds late)
        while os.path.exists({exit_file!r} + ".dashboard-wait"):
            time.sleep(0.05)
        dashboard = http.server.ThreadingHTTPServer(
            (sys.argv[sys.argv.index("--dashboard-host") + 1],
             int(sys.argv[sys.argv.index("--dashboard-port") + 1])), Dashboard)
        dashboard.serve_forever()

    threading.Thread(target=serve_dashboard, daemon=True).start()
if os.path.exists({exit_file!r}) and open({exit_file!r}).read() == "refuse":
    print("ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: ...", flush=True)
    sys.exit(1)
print("Local node IP: fake", flush=True)
print("\x1b[32mRay runtime started.\x1b[39m", flush=True)
while True:
    if os.path.exists({exit_file!r}):
        os.unlink({exit_file!r})
        print("fake raylet died", flush=True)
        note(event="exit")
        sys.exit(1)
    time.sleep(0.05)
"""
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then echo {version}; exit 0; fi
exec {python} "$@"
"""


def oldest_python() -> str:
    """Python 3.8 when this machine has it (CML runtimes can be that old), else ours."""
    for candidate in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))):
        if subprocess.run([candidate, "-c", "pass"], check=False).returncode == 0:
            return candidate
    return sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hold_port(port: int) -> socket.socket | None:
    """A listening socket on `port` of every address; None when something else holds it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the launcher's check
    try:
        sock.bind(("", port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = Deadline(timeout, every)
    while not deadline.passed():
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {deadline.seconds:g} s waiting for {what}")


def session_pids(sid: int) -> list[int]:
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.split("/")[2]))
    return pids


def kill_session(sid: int) -> None:
    """What the platform does to a deleted app or a crashed pod."""
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Project:
    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.root = root
        self.paths: ClusterPaths = render_cluster(root, parse_spec(spec)).paths
        self.processes: list[subprocess.Popen] = []

    def env(self, node: str, ip: str, app_port: int, path: str | None = None) -> dict[str, str]:
        return {
            "PATH": path or os.environ["PATH"],
            "HOME": str(self.root),
            "CDSW_PROJECT_ID": "p1",
            "CDSW_PROJECT": "proj",
            "CDSW_DOMAIN": "cml.example",
            "CDSW_IP_ADDRESS": ip,
            "CDSW_APP_PORT": str(app_port),
            "CDSW_READONLY_PORT": str(free_port()),
            "RAYCAI_CLUSTER": self.paths.cluster,
            "RAYCAI_ROLE": "head" if node == "head" else "worker",
            "RAYCAI_NODE": node,
            "RAY_AUTH_TOKEN": "must-not-reach-ray",
        }

    def start(self, role: str, env: dict[str, str], python: str = sys.executable):
        process = subprocess.Popen(
            [python, self.paths.script_relative(role)],
            cwd=self.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def record(self, node: str) -> dict[str, Any]:
        try:
            return json.loads(self.paths.node_record(node).read_text())
        except (OSError, ValueError):
            return {}

    def phase(self, node: str, phase: str, timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            record = self.record(node)
            return record if record.get("phase") == phase else None

        return wait_for(check, timeout, f"{node} to reach phase {phase} ({self.record(node)})")

    def publish_head(self, port: int, incarnation: str) -> None:
        head = {"schema": 1, "ip": "127.0.0.1", "gcs_port": port, "incarnation": incarnation}
        tmp = self.paths.root / ".head.json.tmp"
        tmp.write_text(json.dumps(head))
        tmp.replace(self.paths.head_json)

    def cleanup(self) -> None:
        for process in self.processes:
            kill_session(process.pid)
            process.wait(10)


def fake_project(tmp_path: Path, workers: dict[str, Any]) -> Project:
    """A project whose .venv holds a fake Ray 2.60.0 (overwrite its python for other versions)."""
    spec = {
        "name": "demo",
        "head": {"runtime_identifier": "img", "cpu": 2, "memory": 4},
        "workers": workers,
        "ray": {"search": [".venv"]},
        "env": {"EXTRA_SETTING": "on"},
    }
    project = Project(tmp_path / "project", spec)
    project.record_file = tmp_path / "ray-calls.jsonl"
    project.exit_file = tmp_path / "ray-exit-now"
    bin_dir = project.root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake_ray(bin_dir, str(project.record_file), str(project.exit_file))
    fake_python(bin_dir, "2.60.0")
    return project


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Project]:
    project = fake_project(tmp_path, {"cpu": 3, "memory": 2})
    yield project
    project.cleanup()


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[Project]:
    """Two worker groups: `pool` and `gpu` (an accelerator, a custom resource, a label)."""
    gpu = {
        "cpu": 2,
        "memory": 8,
        "nvidia_gpu": 1,
        "count": 1,
        "accelerator": "L40S",
        "resources": {"fast_disk": 2},
        "labels": {"tier": "gpu", "example.com/zone": "a"},
    }
    project = fake_project(tmp_path, {"pool": {"cpu": 3, "memory": 2}, "gpu": gpu})
    yield project
    project.cleanup()


def fake_ray(bin_dir: Path, record: str, exit_file: str) -> None:
    ray = bin_dir / "ray"
    ray.write_text(FAKE_RAY.format(python=sys.executable, record=record, exit_file=exit_file))
    ray.chmod(0o755)


def fake_python(bin_dir: Path, version: str) -> None:
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON.format(version=version, python=sys.executable))
    python.chmod(0o755)


def ray_calls(project: Project) -> list[dict[str, Any]]:
    try:
        lines = project.record_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines]


def starts(project: Project) -> list[dict[str, Any]]:
    return [call for call in ray_calls(project) if call["event"] == "start"]


def http_status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_worker_waits_joins_rejoins_and_stops(fake: Project) -> None:
    app_port = free_port()
    launcher = fake.start(
        "worker", fake.env("worker-1", "127.0.0.1", app_port), python=oldest_python()
    )
    status = wait_for(lambda: http_status(app_port), 20, "the worker's status page")
    assert status["node"] == "worker-1" and status["app_port"] == app_port
    fake.phase("worker-1", "waiting-for-head")
    assert http_status(app_port)["detail"] == "head.json not published yet"

    # head.json points at a port that refuses connections: keep waiting, no ray start.
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs_port = gcs.getsockname()[1]
    fake.publish_head(gcs_port, "aaaa")
    wait_for(
        lambda: "does not accept" in (fake.record("worker-1").get("detail") or ""), 10, "detail"
    )
    assert starts(fake) == []

    gcs.listen()
    joined = fake.phase("worker-1", "joined")
    assert joined["head_incarnation"] == "aaaa"
    first = starts(fake)[0]
    argv = first["argv"]
    assert argv[:4] == ["start", "--address", f"127.0.0.1:{gcs_port}", "--block"]
    assert flag(argv, "--node-ip-address") == "127.0.0.1"
    assert flag(argv, "--num-cpus") == "3" and flag(argv, "--num-gpus") == "0"
    assert int(flag(argv, "--memory")) + int(flag(argv, "--object-store-memory")) == 2 * 2**30
    assert flag(argv, "--node-name") == "raycai-demo-worker-1"
    labels = "raycai/cluster=demo,raycai/node=worker-1,raycai/group=worker"
    assert flag(argv, "--labels") == labels and "--resources" not in argv
    assert int(flag(argv, "--dashboard-agent-listen-port")) > 0
    assert len(flag(argv, "--temp-dir")) < 30 and "--head" not in argv
    env = first["env"]
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(fake.paths.auth_token)
    assert "RAY_AUTH_TOKEN" not in env and env["EXTRA_SETTING"] == "on"
    assert env["RAY_SERVE_DEFAULT_HTTP_HOST"] == "127.0.0.1"
    token = read_token(fake.paths).reveal()
    assert token not in json.dumps(first)
    # Own process group, same session: the platform's session kill reaches Ray.
    assert first["pgid"] == first["pid"] != os.getpgid(launcher.pid)
    assert first["sid"] == launcher.pid

    # The head restarts elsewhere: the worker drops its Ray node and joins the new head.
    gcs2 = socket.socket()
    gcs2.bind(("127.0.0.1", 0))
    gcs2.listen()
    fake.publish_head(gcs2.getsockname()[1], "bbbb")
    wait_for(lambda: len(starts(fake)) == 2, 10, "the rejoin")
    assert flag(starts(fake)[1]["argv"], "--address") == f"127.0.0.1:{gcs2.getsockname()[1]}"
    assert {"event": "sigterm", "pid": first["pid"]} in ray_calls(fake)
    wait_for(lambda: fake.record("worker-1").get("head_incarnation") == "bbbb", 10, "bbbb")
    fake.phase("worker-1", "joined")

    # Ray exits on its own: back to the head (same incarnation), start again.
    fake.exit_file.touch()
    wait_for(lambda: len(starts(fake)) == 3, 15, "a new ray start after ray exited")
    record = fake.phase("worker-1", "joined")
    assert "fake raylet died" in record["last_error"]
    assert record["error"] is None

    third = starts(fake)[2]["pid"]
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(10) == 0
    assert fake.record("worker-1")["phase"] == "stopped"
    assert {"event": "sigterm", "pid": third} in ray_calls(fake)
    log = fake.paths.node_log("worker-1").read_text()
    assert "[ray] Ray runtime started." in log and "phase rejoining" in log
    assert token not in log
    gcs.close()
    gcs2.close()


@pytest.mark.parametrize(
    ("previous", "restarts"),
    [("joined", 3), ("stopping", 0), ("stopped", 0)],
)
def test_a_start_after_a_crash_counts_a_platform_restart_and_after_a_stop_not(
    fake: Project, previous: str, restarts: int
) -> None:
    """The previous run's last record: a run that was told to stop (SIGTERM) and killed
    after the grace period leaves "stopping", one that crashed its last working phase."""
    record = fake.paths.node_record("worker-1")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"node": "worker-1", "phase": previous, "restarts": 2}))
    launcher = fake.start("worker", fake.env("worker-1", "127.0.0.1", free_port()))
    try:
        fake.phase("worker-1", "waiting-for-head")
        assert fake.record("worker-1")["restarts"] == restarts
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(10)


def test_a_worker_starts_ray_with_its_groups_resources_and_labels(grouped: Project) -> None:
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    grouped.publish_head(gcs.getsockname()[1], "aaaa")
    # gpu-1 finds its group by RAYCAI_GROUP; pool-2 (no RAYCAI_GROUP) by its node name.
    gpu_env = {**grouped.env("gpu-1", "127.0.0.1", free_port()), "RAYCAI_GROUP": "gpu"}
    grouped.start("worker", gpu_env, python=oldest_python())
    grouped.start("worker", grouped.env("pool-2", "127.0.0.1", free_port()))
    grouped.phase("gpu-1", "joined")
    grouped.phase("pool-2", "joined")
    argv = {flag(c["argv"], "--node-name"): c["argv"] for c in starts(grouped)}
    gpu = argv["raycai-demo-gpu-1"]
    assert flag(gpu, "--num-cpus") == "2" and flag(gpu, "--num-gpus") == "1"
    assert int(flag(gpu, "--memory")) + int(flag(gpu, "--object-store-memory")) == 8 * 2**30
    assert json.loads(flag(gpu, "--resources")) == {"accelerator_type:L40S": 1.0, "fast_disk": 2.0}
    assert flag(gpu, "--labels") == (
        "raycai/cluster=demo,raycai/node=gpu-1,raycai/group=gpu,example.com/zone=a,tier=gpu"
    )
    cpu = argv["raycai-demo-pool-2"]
    assert flag(cpu, "--num-cpus") == "3" and flag(cpu, "--num-gpus") == "0"
    assert flag(cpu, "--labels") == "raycai/cluster=demo,raycai/node=pool-2,raycai/group=pool"
    assert "--resources" not in cpu
    gcs.close()


def test_a_worker_of_a_group_the_cluster_lacks_fails(grouped: Project) -> None:
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    grouped.publish_head(gcs.getsockname()[1], "aaaa")
    launcher = grouped.start("worker", grouped.env("tpu-1", "127.0.0.1", free_port()))
    assert launcher.wait(20) == 2
    assert "no worker group 'tpu'" in grouped.record("tpu-1")["error"]
    assert starts(grouped) == []
    gcs.close()


def test_head_publishes_falls_back_to_free_ports_and_exits_with_ray(fake: Project) -> None:
    taken = socket.socket()
    taken.bind(("", 0))
    taken.listen()
    # Ray's default dashboard port held too (or by another test's head already): a free port
    # from the kernel instead, which no head of a test running beside this one picks while
    # this fake dashboard waits (CI saw one answer there, and the proxy start early).
    dashboard_default = hold_port(8265)
    config = json.loads(fake.paths.launcher_json.read_text())
    config["ray"]["gcs_port"] = taken.getsockname()[1]
    # One restart of Ray in place, then the platform's turn.
    config.setdefault("timing", {}).update(recover_max=1, recover_backoff_s=0.1)
    fake.paths.launcher_json.write_text(json.dumps(config))
    app_port = free_port()
    dashboard_wait = Path(str(fake.exit_file) + ".dashboard-wait")
    dashboard_wait.touch()
    launcher = fake.start("head", fake.env("head", "127.0.0.1", app_port))
    record = fake.phase("head", "running")
    head = json.loads(fake.paths.head_json.read_text())
    argv = starts(fake)[0]["argv"]
    assert argv[:3] == ["start", "--head", "--block"]
    assert head["gcs_port"] == int(flag(argv, "--port")) != taken.getsockname()[1]
    assert head["ip"] == "127.0.0.1"
    assert head["client_port"] == int(flag(argv, "--ray-client-server-port"))
    assert head["ray_version"] == "2.60.0" and head["incarnation"] == record["head_incarnation"]
    assert flag(argv, "--dashboard-host") == "0.0.0.0"
    # The dashboard on a port of its own; the application's port is the head proxy's.
    assert head["dashboard_port"] == int(flag(argv, "--dashboard-port")) != app_port
    ports = [head[key] for key in ("gcs_port", "client_port", "dashboard_port", "serve_port")]
    assert len({*ports, app_port}) == 5 and head["serve_port"] > 0 and head["app_port"] == app_port
    assert flag(argv, "--num-cpus") == "2" and flag(argv, "--node-name") == "raycai-demo-head"
    env = starts(fake)[0]["env"]
    assert env["RAY_SERVE_DEFAULT_HTTP_HOST"] == "127.0.0.1"  # Serve on the head's loopback
    if dashboard_default is not None:
        assert head["dashboard_port"] != 8265
    taken.close()

    # The head proxy starts once the dashboard answers (not before), then Ray's public paths
    # need no token.
    time.sleep(1.5)  # a launcher poll or more: the dashboard does not answer yet
    assert fake.record("head")["proxy"]["state"] == "starting"
    assert proxy_get(app_port, "/")[0] == 0
    dashboard_wait.unlink()
    proxy = wait_for(lambda: running_proxy(fake), 30, "the head proxy")
    assert proxy["restarts"] == 0
    wait_for(lambda: proxy_get(app_port, "/")[0] == 200, 30, "the proxy to answer")
    assert proxy_get(app_port, "/") == (200, {"path": "/", "authorization": None})
    assert proxy_get(app_port, "/api/jobs/")[0] == 401
    assert proxy_get(app_port, "/serve/hello")[0] == 401
    token = read_token(fake.paths).reveal()
    assert proxy_get(app_port, "/api/jobs/", token) == (
        200,
        {"path": "/api/jobs/", "authorization": f"Bearer {token}"},
    )
    # Serve has not started: its routes answer 503 while it does not listen.
    assert proxy_get(app_port, "/serve/hello", token)[0] == 503

    # Killed, it is started again (after a backoff) and answers again.
    os.kill(proxy["pid"], signal.SIGKILL)
    again = wait_for(
        lambda: (p := running_proxy(fake)) and p["pid"] != proxy["pid"] and p, 30, "a restart"
    )
    assert again["restarts"] == 1
    wait_for(lambda: proxy_get(app_port, "/")[0] == 200, 30, "the proxy to answer again")
    log = fake.paths.node_log("head").read_text()
    assert "the head proxy exited with code -9" in log

    # Ray exits unasked: started again in this application (the proxy stays up), once; the
    # second time the budget is spent and the launcher exits for the platform to restart it.
    fake.exit_file.touch()
    record = wait_for(
        lambda: (r := fake.record("head"))["ray_restarts"] == 1 and r["phase"] == "running" and r,
        30,
        "Ray restarted in place",
    )
    assert "fake raylet died" in record["recoveries"][-1]["why"]
    assert len(starts(fake)) == 2 and launcher.poll() is None
    assert fake.record("head")["proxy"]["pid"] == again["pid"]
    fake.exit_file.touch()
    assert launcher.wait(10) == 1  # the platform restarts the app, which publishes anew
    record = fake.record("head")
    assert record["phase"] == "ray-exited" and "fake raylet died" in record["error"]
    assert "leaves the restart to the platform" in record["error"]
    assert record["proxy"]["state"] == "off"  # stopped with Ray
    wait_for(lambda: proxy_get(app_port, "/")[0] == 0, 10, "the proxy to be gone")
    if dashboard_default is not None:
        dashboard_default.close()


def running_proxy(project: Project) -> dict[str, Any] | None:
    proxy = project.record("head").get("proxy") or {}
    return proxy if proxy.get("state") == "running" and proxy_get_ok(proxy) else None


def proxy_get_ok(proxy: dict[str, Any]) -> bool:
    return bool(proxy.get("pid")) and session_pids_state(int(proxy["pid"])) != "Z"


def proxy_get(port: int, path: str, token: str | None = None) -> tuple[int, Any]:
    """(status, JSON body or text) of GET `path` on the head's application port; 0 when
    nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("X-Ray-Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError:
        return 0, None


def test_a_port_taken_before_rays_first_start_is_replaced_for_the_restart(fake: Project) -> None:
    """Two heads on one machine (the local workspace) can pick the same free port; Ray refuses
    the second's start. Nothing was published yet, so its restart takes a free port instead
    of being refused again until the platform's restart, and the head proxy and the idle
    check follow the dashboard to it."""
    config = json.loads(fake.paths.launcher_json.read_text())
    config.setdefault("timing", {}).update(recover_max=2, recover_backoff_s=0.1)
    fake.paths.launcher_json.write_text(json.dumps(config))
    Path(str(fake.exit_file) + ".dashboard-occupied").touch()
    app_port = free_port()
    fake.start("head", fake.env("head", "127.0.0.1", app_port))
    try:
        record = fake.phase("head", "running")
        first, second = (call["argv"] for call in starts(fake)[:2])
        taken = int(flag(first, "--dashboard-port"))
        assert int(flag(second, "--dashboard-port")) != taken
        head = json.loads(fake.paths.head_json.read_text())
        assert head["dashboard_port"] == int(flag(second, "--dashboard-port"))
        # The others stay unless taken too (Ray's default GCS port may be, by another test's
        # fake head on another xdist worker, as in CI): what Ray got is what is published.
        assert head["gcs_port"] == int(flag(second, "--port"))
        assert record["ray_restarts"] == 1 and "already occupied" in record["recoveries"][-1]["why"]
        log = fake.paths.node_log("head").read_text()
        assert f"the dashboard port {taken} is taken now: using " in log
        # The proxy forwards to the dashboard's new port (the old one accepts and never answers).
        wait_for(lambda: proxy_get(app_port, "/")[0] == 200, 30, "the proxy to answer")
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(Path(str(fake.exit_file) + ".holder").read_text()), signal.SIGKILL)


def test_serve_listens_on_the_pod_network_when_the_spec_says_so(tmp_path: Path) -> None:
    spec = {
        "name": "demo",
        "head": {"runtime_identifier": "img", "cpu": 1, "memory": 2},
        "ray": {"search": [".venv"]},
        "serve": {"listen": "pod"},
    }
    project = Project(tmp_path / "project", spec)
    project.record_file = tmp_path / "ray-calls.jsonl"
    project.exit_file = tmp_path / "ray-exit-now"
    bin_dir = project.root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake_ray(bin_dir, str(project.record_file), str(project.exit_file))
    fake_python(bin_dir, "2.60.0")
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    project.publish_head(gcs.getsockname()[1], "aaaa")
    try:
        project.start("worker", project.env("worker-1", "127.0.0.1", free_port()))
        project.phase("worker-1", "joined")
        assert starts(project)[0]["env"]["RAY_SERVE_DEFAULT_HTTP_HOST"] == "0.0.0.0"
    finally:
        project.cleanup()
        gcs.close()


@pytest.mark.parametrize("problem", ["missing", "version", "token-missing"])
def test_fatal_problems_are_recorded(fake: Project, problem: str, tmp_path: Path) -> None:
    config = json.loads(fake.paths.launcher_json.read_text())
    if problem == "missing":
        (fake.root / ".venv" / "bin" / "ray").unlink()
        config["ray"]["search"] = [".venv", "PATH"]
    elif problem == "version":
        fake_python(fake.root / ".venv" / "bin", "2.9.3")
    else:
        fake.paths.auth_token.unlink()
        config.setdefault("timing", {})["missing_grace_s"] = (
            0.5  # a re-upload's moment without the file
        )
    fake.paths.launcher_json.write_text(json.dumps(config))
    env = fake.env("worker-2", "127.0.0.1", free_port(), path="/usr/bin:/bin")
    launcher = fake.start("worker", env, python=oldest_python())
    assert launcher.wait(20) != 0
    record = fake.record("worker-2")
    assert record["phase"] == "failed"
    error = record["error"]
    assert "\n" not in error
    expected = {
        "missing": ["Ray 2.60.0 not found", ".venv/bin/ray", "no `ray` on PATH", "setup-env"],
        "version": ["wrong Ray version", "2.60.0", "2.9.3", "setup-env"],
        "token-missing": ["auth_token", "missing"],
    }[problem]
    for text in expected:
        assert text in error
    assert starts(fake) == []
    assert error in fake.paths.node_log("worker-2").read_text()


def test_a_launcher_json_being_reuploaded_is_waited_for(fake: Project) -> None:
    """From outside CML launcher.json is replaced by delete then upload: a launcher that
    starts in between waits for it (MISSING_GRACE_S) instead of failing."""
    away = fake.paths.launcher_json.with_name("launcher.json.away")
    fake.paths.launcher_json.rename(away)
    env = fake.env("worker-2", "127.0.0.1", free_port(), path="/usr/bin:/bin")
    launcher = fake.start("worker", env, python=oldest_python())
    try:
        time.sleep(1.0)
        assert launcher.poll() is None  # still waiting, not failed
        away.rename(fake.paths.launcher_json)
        deadline = Deadline(20, every=0.1)
        while not fake.paths.node_record("worker-2").is_file():
            assert launcher.poll() is None, "the launcher gave up"
            assert not deadline.passed(), "the launcher never went on"
            time.sleep(0.1)
    finally:
        launcher.terminate()
        launcher.wait(20)


def test_a_token_others_can_read_is_made_owner_only(fake: Project) -> None:
    """The files API cannot set a file's mode: a token uploaded from outside CML is 0644,
    and the launcher of its own user makes it 0600 and says so, instead of refusing."""
    fake.paths.auth_token.chmod(0o644)
    env = fake.env("worker-2", "127.0.0.1", free_port(), path="/usr/bin:/bin")
    launcher = fake.start("worker", env, python=oldest_python())
    log = fake.paths.node_log("worker-2")
    try:
        deadline = Deadline(20, every=0.1)
        while not (log.is_file() and "made it 0600" in log.read_text()):
            assert launcher.poll() is None, log.read_text() if log.is_file() else "no log"
            assert not deadline.passed(), "the launcher never fixed the token's mode"
            time.sleep(0.1)
        assert fake.paths.auth_token.stat().st_mode & 0o777 == 0o600
        assert "had mode 0644" in log.read_text()
    finally:
        launcher.terminate()
        launcher.wait(20)


def test_worker_whose_token_is_refused_fails(fake: Project) -> None:
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    fake.publish_head(gcs.getsockname()[1], "cccc")
    fake.exit_file.write_text("refuse")
    launcher = fake.start("worker", fake.env("worker-1", "127.0.0.1", free_port()))
    assert launcher.wait(20) == 3
    record = fake.record("worker-1")
    assert record["phase"] == "failed" and "refused this node's Ray token" in record["error"]
    gcs.close()


RAY_NODE_ID = "ab" * 28


def drain_calls(project: Project) -> list[list[str]]:
    return [call["argv"] for call in ray_calls(project) if call["event"] == "drain"]


def request_drain(project: Project, node_id: str, deadline_s: float) -> None:
    from raycai_core.cluster.drain import request_drain as write_request

    write_request(project.paths, "worker-1", node_id, deadline_s, "scale-down test")


def test_worker_drains_through_ray_when_asked_and_on_sigterm(fake: Project) -> None:
    from raycai_core.cluster.drain import clear_drain_request

    config = json.loads(fake.paths.launcher_json.read_text())
    config["timing"] = {"watch_poll_s": 0.05, "drain_poll_s": 0.05, "sigterm_drain_s": 5}
    fake.paths.launcher_json.write_text(json.dumps(config))
    Path(str(fake.exit_file) + ".raylet-id").write_text(RAY_NODE_ID)
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    gcs_port = gcs.getsockname()[1]
    fake.publish_head(gcs_port, "dddd")
    request_drain(fake, "cd" * 28, 30)  # left for an earlier Ray node of worker-1
    launcher = fake.start("worker", fake.env("worker-1", "127.0.0.1", free_port()))
    joined = fake.phase("worker-1", "joined")
    assert joined["ray_node_id"] == RAY_NODE_ID and joined["drain"] == 1
    time.sleep(0.5)  # ten watch polls: a stale request must not drain this node
    assert fake.record("worker-1")["phase"] == "joined" and drain_calls(fake) == []

    # A scale-down asks: Ray drains the node, the raylet exits once idle, Ray is stopped.
    request_drain(fake, RAY_NODE_ID, 30)
    drained = fake.phase("worker-1", "drained")
    assert "tasks finished" in drained["detail"] and drained["ray_node_id"] is None
    (argv,) = drain_calls(fake)
    assert flag(argv, "--address") == f"127.0.0.1:{gcs_port}"
    assert flag(argv, "--node-id") == RAY_NODE_ID
    assert flag(argv, "--reason") == "DRAIN_NODE_REASON_PREEMPTION"
    assert 0 < int(flag(argv, "--deadline-remaining-seconds")) <= 30
    first = starts(fake)[0]["pid"]
    assert {"event": "sigterm", "pid": first} in ray_calls(fake)
    assert all(call.get("env_token") == str(fake.paths.auth_token) for call in ray_calls(fake)
               if call["event"] == "drain")  # fmt: skip

    # The request is withdrawn (the cluster keeps the worker): it joins again.
    clear_drain_request(fake.paths, "worker-1")
    wait_for(lambda: len(starts(fake)) == 2, 10, "the worker to rejoin after the withdrawal")
    fake.phase("worker-1", "joined")

    # Work keeps the node busy past the grace: drained anyway when the grace runs out.
    Path(str(fake.exit_file) + ".busy").touch()
    request_drain(fake, RAY_NODE_ID, 1)
    drained = fake.phase("worker-1", "drained")
    assert "grace ran out" in drained["detail"]
    clear_drain_request(fake.paths, "worker-1")
    wait_for(lambda: len(starts(fake)) == 3, 10, "the second rejoin")
    fake.phase("worker-1", "joined")

    # Deleted from the CML UI (SIGTERM): the launcher drains first, then stops Ray.
    Path(str(fake.exit_file) + ".busy").unlink()
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(20) == 0
    assert fake.record("worker-1")["phase"] == "stopped"
    last = drain_calls(fake)[-1]
    assert len(drain_calls(fake)) == 3 and "the application stops" in flag(last, "--reason-message")
    log = fake.paths.node_log("worker-1").read_text()
    assert "phase draining" in log and "phase drained" in log
    gcs.close()


def test_a_refused_drain_still_ends_drained(fake: Project) -> None:
    config = json.loads(fake.paths.launcher_json.read_text())
    config["timing"] = {"watch_poll_s": 0.05, "drain_poll_s": 0.05}
    fake.paths.launcher_json.write_text(json.dumps(config))
    Path(str(fake.exit_file) + ".raylet-id").write_text(RAY_NODE_ID)
    Path(str(fake.exit_file) + ".refuse-drain").touch()
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    fake.publish_head(gcs.getsockname()[1], "eeee")
    launcher = fake.start("worker", fake.env("worker-1", "127.0.0.1", free_port()))
    fake.phase("worker-1", "joined")
    request_drain(fake, RAY_NODE_ID, 30)
    drained = fake.phase("worker-1", "drained")
    assert "did not drain" in drained["detail"] and "not accepted" in drained["last_error"]
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(20) == 0
    gcs.close()


@pytest.mark.parametrize("state", ["deleting", "suspended"])  # `down` or a suspend runs
def test_no_drain_on_sigterm_when_the_cluster_is_being_deleted(fake: Project, state: str) -> None:
    Path(str(fake.exit_file) + ".raylet-id").write_text(RAY_NODE_ID)
    gcs = socket.socket()
    gcs.bind(("127.0.0.1", 0))
    gcs.listen()
    fake.publish_head(gcs.getsockname()[1], "ffff")
    launcher = fake.start("worker", fake.env("worker-1", "127.0.0.1", free_port()))
    fake.phase("worker-1", "joined")
    fake.paths.cluster_json.write_text(json.dumps({"state": state}))
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(20) == 0
    assert fake.record("worker-1")["phase"] == "stopped" and drain_calls(fake) == []
    assert fake.record("worker-1")["suspended"] == (state == "suspended")  # the next run knows
    gcs.close()


# --- real Ray -------------------------------------------------------------------------------


def ray_processes(token_path: str) -> list[int]:
    """Processes (ours: they carry this cluster's token path in their environment)."""
    needle = f"RAY_AUTH_TOKEN_PATH={token_path}".encode()
    found = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            if needle in Path(environ).read_bytes().split(b"\0"):
                found.append(int(environ.split("/")[2]))
        except OSError:
            continue
    return [pid for pid in found if session_pids_state(pid) != "Z"]


def session_pids_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def dashboard_nodes(ip: str, port: int, token: str | None) -> tuple[int, list[dict[str, Any]]]:
    request = urllib.request.Request(
        f"http://{ip}:{port}/api/v0/nodes?limit=100&detail=true"
        "&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.loads(response.read())
            return response.status, body["data"]["result"]["result"]
    except urllib.error.HTTPError as exc:
        return exc.code, []
    except (OSError, ValueError, KeyError):
        return 0, []


def alive_names(ip: str, port: int, token: str) -> set[str] | None:
    status, nodes = dashboard_nodes(ip, port, token)
    return {n["node_name"] for n in nodes} if status == 200 else None


@pytest.mark.ray
@pytest.mark.timeout(150)
def test_real_head_and_worker_join_with_labels_and_stop_on_sigterm(
    private_netns: None, tmp_path: Path
) -> None:
    spec = {
        "name": "rt",
        "head": {"runtime_identifier": "img", "cpu": 1, "memory": 1},
        "workers": {"cpu": 1, "memory": 1},
        "ray": {"search": ["PATH"]},
    }
    project = Project(tmp_path / "project", spec)
    venv_bin = str(Path(sys.executable).parent)
    path = f"{venv_bin}:/usr/bin:/bin"
    token = read_token(project.paths).reveal()
    head_port, worker_port = free_port(), free_port()
    try:
        head = project.start("head", project.env("head", "127.0.0.2", head_port, path))
        worker = project.start("worker", project.env("worker-1", "127.0.0.3", worker_port, path))
        project.phase("head", "running", timeout=60)
        project.phase("worker-1", "joined", timeout=60)
        names = {"raycai-rt-head", "raycai-rt-worker-1"}
        wait_for(lambda: alive_names("127.0.0.2", head_port, token) == names, 30, "2 nodes", 0.5)
        _, nodes = dashboard_nodes("127.0.0.2", head_port, token)
        labels = {n["node_name"]: n.get("labels", {}) for n in nodes}
        assert labels["raycai-rt-worker-1"].get("raycai/node") == "worker-1"
        assert labels["raycai-rt-head"].get("raycai/cluster") == "rt"
        assert dashboard_nodes("127.0.0.2", head_port, None)[0] == 401

        assert len(ray_processes(str(project.paths.auth_token))) >= 6  # the scan sees Ray
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(45) == 0
        head.send_signal(signal.SIGTERM)
        assert head.wait(45) == 0
        assert project.record("worker-1")["phase"] == "stopped"
        assert project.record("head")["phase"] == "stopped"
        wait_for(lambda: not ray_processes(str(project.paths.auth_token)), 10, "Ray to be gone")
        # A process SIGKILLed as its group went may still be exiting for a moment (its
        # environment already unreadable to the scan above): gone soon, not at once.
        for process in project.processes:
            wait_for(lambda p=process: not session_pids(p.pid), 10, "the node's session to end")
        log = project.paths.node_log("worker-1").read_text()
        assert token not in log and "phase stopped" in log
    finally:
        project.cleanup()
        remove_ray_temp_dirs(project)


def remove_ray_temp_dirs(project: Project) -> None:
    for log in project.paths.logs_dir.glob("*.log"):
        for temp_dir in re.findall(r"--temp-dir (\S+)", log.read_text()):
            shutil.rmtree(temp_dir, ignore_errors=True)
