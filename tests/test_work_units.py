"""Work on a cluster without Ray: parsing Ray 2.60's job and Serve answers, job requests,
working_dir packages, driver access and versions, OSC 52, and `import raycai`."""

from __future__ import annotations

import base64
import io
import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.ray.errors import UnexpectedAnswer
from raycai_core.ray.models import JobRequest
from raycai_core.ray.parsers import parse_job, parse_jobs, parse_serve
from raycai_core.work.access import (
    ClusterAccessError,
    head_app_url,
    load_access,
    shell_exports,
    version_problems,
)
from raycai_core.work.clipboard import osc52_sequence
from raycai_core.work.jobs import (
    JobRequestError,
    entrypoint_from_argv,
    parse_amount,
    parse_env,
    summarise_jobs,
)
from raycai_core.work.packages import PackageError, build_package
from tests.fake_dashboard import SERVE_EMPTY, job, serve_running

# -- jobs -------------------------------------------------------------------------------------


def test_job_from_ray_shape() -> None:
    info = parse_job(job("raysubmit_1", "FAILED", "python x.py"))
    assert info.id == "raysubmit_1" and info.is_submission and info.terminal
    assert info.status == "FAILED" and info.driver_exit_code == 3
    assert info.start_time is not None and info.end_time is not None
    assert info.duration() == pytest.approx(60.0, abs=1.0)


def test_partial_and_odd_jobs_parse_to_what_is_known() -> None:
    info = parse_job({"job_id": "03000000", "status": "weird", "start_time": "x", "end_time": 0})
    assert info.id == "03000000" and info.type == "DRIVER"
    assert info.status == "UNKNOWN" and info.start_time is None and info.duration() is None
    assert parse_job({}).id == "?"
    with pytest.raises(UnexpectedAnswer):
        parse_job(["not", "an", "object"])


def test_job_list_newest_first_and_junk_entries_skipped() -> None:
    old = job("a", "SUCCEEDED", "x", start_time=1_000)
    new = job("b", "RUNNING", "y", start_time=2_000)
    assert [j.id for j in parse_jobs([old, "junk", new, 3])] == ["b", "a"]
    with pytest.raises(UnexpectedAnswer):
        parse_jobs({"jobs": []})


def test_jobs_summary_line() -> None:
    jobs = parse_jobs(
        [job(str(i), status, "x") for i, status in enumerate(("RUNNING", "PENDING", "FAILED"))]
        + [job("d", "SUCCEEDED", "x")]
    )
    assert summarise_jobs(jobs).line() == "jobs: 1 running, 1 pending, 1 failed"
    assert summarise_jobs([]).line() == "jobs: none"


def test_job_request_body() -> None:
    request = JobRequest(
        "python train.py",
        env={"A": "1"},
        working_dir_uri="gcs://_ray_pkg_ab.zip",
        cpus=2,
        gpus=0.5,
        memory_gb=1.5,
    )
    assert request.body() == {
        "entrypoint": "python train.py",
        "runtime_env": {"env_vars": {"A": "1"}, "working_dir": "gcs://_ray_pkg_ab.zip"},
        "entrypoint_num_cpus": 2,
        "entrypoint_num_gpus": 0.5,
        "entrypoint_memory": int(1.5 * 2**30),
    }
    assert JobRequest("x").body() == {"entrypoint": "x"}  # no runtime_env: the project root


def test_entrypoint_argv() -> None:
    assert entrypoint_from_argv(["python a.py && echo done"]) == "python a.py && echo done"
    words = ["python", "-c", "print('a b')"]
    assert entrypoint_from_argv(words) == shlex.join(words)
    with pytest.raises(JobRequestError, match="empty"):
        entrypoint_from_argv(["  "])


@pytest.mark.parametrize(
    ("items", "message"),
    [(["NOEQUALS"], "not KEY=VALUE"), (["1BAD=x"], "not a valid variable name")],
)
def test_bad_env_items(items: list[str], message: str) -> None:
    with pytest.raises(JobRequestError, match=message):
        parse_env(items)


def test_env_items_and_amounts() -> None:
    assert parse_env(["A=1", "", "B=x=y"]) == {"A": "1", "B": "x=y"}
    assert parse_amount("", "cpus") is None and parse_amount("1.5", "cpus") == 1.5
    for bad in ("-1", "lots", "nan", "inf"):
        with pytest.raises(JobRequestError, match="cpus"):
            parse_amount(bad, "cpus")


# -- serve ------------------------------------------------------------------------------------


def test_serve_not_running() -> None:
    state = parse_serve(SERVE_EMPTY)
    assert not state.running and state.applications == []


def test_serve_running_application() -> None:
    state = parse_serve(serve_running(replicas=2))
    (app,) = state.applications
    assert state.running and app.healthy and app.route_prefix == "/hello"
    (deployment,) = app.deployments
    assert deployment.replicas == {"RUNNING": 2} and deployment.target_replicas == 2
    assert deployment.replicas_text() == "2/2 RUNNING"
    assert state.route_url("10.0.0.5", app) == "http://10.0.0.5:8000/hello"


def test_serve_unhealthy_and_partial_answers() -> None:
    (app,) = parse_serve(serve_running(status="UNHEALTHY")).applications
    assert not app.healthy and app.message
    assert not app.deployments[0].healthy and "ValueError" in app.deployments[0].message

    partial = parse_serve({"applications": {"a": {"deployments": {"D": {"replicas": "x"}}}}})
    (app,) = partial.applications
    assert app.status == "UNKNOWN" and app.route_prefix is None
    assert partial.route_url("h", app) is None
    assert app.deployments[0].replicas_text() == "0/? RUNNING"
    assert parse_serve({"http_options": {"port": 9000}}).http_port == 9000
    with pytest.raises(UnexpectedAnswer):
        parse_serve([1, 2])


# -- packages ---------------------------------------------------------------------------------


def test_package_leaves_out_tokens_and_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "main.py").write_text("print(1)\n")
    for skipped in (".raycai/clusters/demo", ".git", "pkg/__pycache__", ".venv"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "secret").write_text("token")
    package = build_package(tmp_path)
    names = zipfile.ZipFile(io.BytesIO(package.data)).namelist()
    assert sorted(names) == ["main.py", "pkg/mod.py"]
    assert package.uri.startswith("gcs://_ray_pkg_") and package.uri.endswith(".zip")
    assert build_package(tmp_path).name == package.name  # content-addressed
    (tmp_path / "main.py").write_text("print(2)\n")
    assert build_package(tmp_path).name != package.name


def test_package_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not a directory"):
        build_package(tmp_path / "nope")


# -- access -----------------------------------------------------------------------------------


def publish(project: Path, name: str = "demo", **head: object) -> ClusterPaths:
    paths = ClusterPaths(project, name)
    paths.root.mkdir(parents=True)
    record = {"ip": "10.0.0.5", "gcs_port": 6379, "dashboard_port": 8090, "client_port": 10001}
    record.update({"ray_version": "2.60.0", "python_version": "3.11.7", **head})
    paths.head_json.write_text(json.dumps(record))
    paths.auth_token.write_text("s3cret-token")
    paths.auth_token.chmod(0o600)
    return paths


def test_access_and_exports(tmp_path: Path) -> None:
    publish(tmp_path)
    access = load_access(tmp_path, "demo")
    env = access.environment()
    assert env["RAY_ADDRESS"] == "ray://10.0.0.5:10001"
    assert env["RAY_API_SERVER_ADDRESS"] == "http://10.0.0.5:8090"
    assert env["RAY_AUTH_TOKEN_PATH"].endswith(".raycai/clusters/demo/auth_token")
    exports = shell_exports(env)
    assert "s3cret-token" not in exports
    shell = subprocess.run(
        ["bash", "-c", exports + 'printf %s "$RAY_AUTH_TOKEN_PATH"'], capture_output=True, text=True
    )
    assert shell.stdout == env["RAY_AUTH_TOKEN_PATH"]


def test_access_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ClusterAccessError, match="no cluster named 'demo'"):
        load_access(tmp_path, "demo")
    paths = publish(tmp_path)
    paths.auth_token.unlink()
    with pytest.raises(ClusterAccessError, match="token"):
        load_access(tmp_path, "demo")
    paths.head_json.unlink()
    with pytest.raises(ClusterAccessError, match="not published its address"):
        load_access(tmp_path, "demo")


def test_version_problems_name_both_versions_and_the_fix(tmp_path: Path) -> None:
    publish(tmp_path)
    access = load_access(tmp_path, "demo")
    assert version_problems(access, python="3.11.2", ray="2.60.0") == []
    ray, python = version_problems(access, python="3.10.4", ray="2.50.0")
    assert "Ray 2.50.0" in ray and "Ray 2.60.0" in ray and "ray[default]==2.60.0" in ray
    assert "Python 3.10.4" in python and "Python 3.11.7" in python
    (missing,) = version_problems(access, python="3.11.7", ray=None)
    assert "not installed" in missing


def test_head_app_url() -> None:
    url = head_app_url("ml-1.example.com", "abcd-1234", "demo")
    assert url.startswith("https://ray-demo-") and url.endswith("-h.ml-1.example.com")


# -- OSC 52 and the driver package --------------------------------------------------------------


def test_osc52_sequence() -> None:
    sequence = osc52_sequence("tok€n")
    assert sequence.startswith("\x1b]52;c;") and sequence.endswith("\x07")
    assert base64.b64decode(sequence[7:-1]).decode() == "tok€n"
    wrapped = osc52_sequence("x", tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]52;c;") and wrapped.endswith("\x1b\\")
    with pytest.raises(ValueError, match="too long"):
        osc52_sequence("x" * 100_000)


def test_import_raycai_loads_neither_ray_nor_raycai_core() -> None:
    code = (
        "import sys, raycai\n"
        "loaded = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'raycai_core'))]\n"
        "print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_connect_refuses_other_versions_before_loading_ray(tmp_path: Path) -> None:
    publish(tmp_path, ray_version="2.9.9")
    code = (
        "import sys, raycai\n"
        f"try:\n    raycai.connect('demo', project_dir={str(tmp_path)!r})\n"
        "except raycai.VersionMismatch as exc:\n    print('MISMATCH', exc)\n"
        "print('ray' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "CML_HOST": "https://ml.example.com", "CML_API_KEY": "k"}
    env["CML_PROJECT_ID"] = "p"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "MISMATCH" in done.stdout and "Ray 2.9.9" in done.stdout, done.stderr
    assert done.stdout.strip().endswith("False")


def test_connect_starts_the_client_server_again_only_when_it_failed_to_start() -> None:
    from raycai._connect import SERVER_START_FAILED, init_with_retry

    waits: list[float] = []
    # What Ray 2.60 said when the server died while its proxy read its command line (CI).
    died = (
        "Initialization failure from server:\nTraceback (most recent call last):\n"
        '  File ".../ray/util/client/server/proxier.py", line 396, in start_specific_server\n'
        "    cmd = psutil_proc.cmdline()\n"
        "psutil.ZombieProcess: PID still exists but it's a zombie (pid=5098)"
    )
    failures = [
        ConnectionAbortedError(died),
        ConnectionAbortedError(f"Initialization failure from server: {SERVER_START_FAILED}"),
    ]

    def init() -> str:
        if failures:
            raise failures.pop()
        return "context"

    assert init_with_retry(init, sleep=waits.append) == "context"
    assert waits == [2.0, 4.0]

    def refused() -> str:
        raise ConnectionError("UNAUTHENTICATED: token mismatch")

    with pytest.raises(ConnectionError, match="UNAUTHENTICATED"):
        init_with_retry(refused, sleep=waits.append)
    assert waits == [2.0, 4.0]  # a refused token is not tried again

    def other_init_failure() -> str:
        raise ConnectionAbortedError("Initialization failure from server: RuntimeEnvSetupError")

    with pytest.raises(ConnectionAbortedError, match="RuntimeEnvSetupError"):
        init_with_retry(other_init_failure, sleep=waits.append)
    assert waits == [2.0, 4.0]  # nor is a failure of the driver's own making

    def always() -> str:
        raise ConnectionAbortedError(SERVER_START_FAILED)

    with pytest.raises(ConnectionAbortedError):
        init_with_retry(always, attempts=3, sleep=waits.append)
    assert waits == [2.0, 4.0, 2.0, 4.0]
