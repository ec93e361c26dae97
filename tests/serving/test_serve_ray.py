"""Serving the example (examples/serve) on a real cluster (head + 1 worker, shared by the
package) through the local workspace, which stands in for CML: deployed with
`raycai serve deploy`, reached through the head application's URL (the workspace's ingress,
then the head proxy, then Serve on the head's loopback) with the `curl` line `raycai serve
status` prints; the credentials each hop wants; nothing of Serve on a pod address; a
streamed answer arriving in chunks; the dashboard's browser login through the same URL; a
refused config; deleting one application.

The tests run in file order on the package's cluster (tests/serving/conftest.py), after the
recovery tests; the last one deletes an application.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from urllib.parse import urlsplit

import httpx
import pytest

from raycai_core.local.ingress import LOGIN_PATH, SESSION_COOKIE
from tests.helpers import raycai
from tests.serving.conftest import NAME, Served, serve_apps

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
RAY_COOKIE = "ray-authentication-token"


@pytest.fixture(scope="module")
def served(serving: Served) -> Served:
    """The package's cluster as the recovery tests left it, its Serve status read again."""
    return serving.refreshed()


def session_env(served: Served) -> dict[str, str]:
    """A session's variables that the printed line reads: the workload's key, nothing else."""
    return {"PATH": os.environ["PATH"], "CDSW_APIV2_KEY": served.handle.api_key}


def printed_curl(served: Served, app: str) -> str:
    lines = [line.strip() for line in served.status.splitlines()]
    (line,) = [
        x for x in lines if x.startswith("curl ") and x.split()[-1].strip("'") == served.url(app)
    ]
    return line


def test_the_printed_curl_line_returns_the_models_answer(served: Served) -> None:
    line = printed_curl(served, "sentiment")
    assert served.token not in served.status  # read from its file when the line runs
    assert served.url("sentiment") in line and "$CDSW_APIV2_KEY" in line
    done = subprocess.run(
        ["bash", "-c", line],  # as printed (curl's progress meter goes to stderr)
        env=session_env(served),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["label"] == "positive" and answer["score"] > 0
    assert "easy" in answer["words"]  # the preprocessing step's output, through the model

    # The line as printed, the text as a query: the model's answer for it.
    url, host = served.ingress("sentiment", "?text=slow+and+broken")
    got = httpx.get(url, headers={**host, **served.workspace_key(), **served.ray_token()})
    assert got.status_code == 200 and got.json()["label"] == "negative"


def test_the_head_url_wants_both_credentials(served: Served) -> None:
    url, host = served.ingress("sentiment")
    bare = httpx.get(url, headers=host, timeout=10)
    assert bare.status_code == 401  # the workspace's login (CML's)
    no_token = httpx.get(url, headers={**host, **served.workspace_key()}, timeout=10)
    assert no_token.status_code in (401, 403)  # the head proxy: Ray's token
    assert "Ray token" in no_token.text
    token_only = httpx.get(url, headers={**host, **served.ray_token()}, timeout=10)
    assert token_only.status_code == 401


def test_nothing_of_serve_on_a_pod_address(served: Served) -> None:
    paths = served.paths
    head = json.loads(paths.head_json.read_text())
    worker_ip = json.loads(paths.node_record("worker-1").read_text())["ip"]
    assert head["ip"] != worker_ip and head["ip"].startswith("127.")
    for ip in (head["ip"], worker_ip):
        for port in sorted({8000, head["serve_port"]}):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{ip}:{port}/sentiment", timeout=5)
    # ... while the head's application port (the head proxy) serves it, with the token.
    inside = served.apps["sentiment"]["url"]
    assert inside.startswith(f"http://{head['ip']}:{head['app_port']}/serve/")
    assert httpx.get(inside, headers=served.ray_token(), timeout=10).json()["label"] == "positive"


def read_stream(url: str, headers: dict[str, str]) -> list[tuple[float, bytes]]:
    """(arrival time, bytes) of each read of a streamed answer."""
    reads = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            reads.append((time.time(), chunk))
    return reads


@pytest.mark.parametrize("way", ["ingress and head proxy", "head proxy"])
def test_a_streamed_answer_arrives_in_chunks(served: Served, way: str) -> None:
    query = "?chunks=5&delay=0.3"
    if way == "head proxy":
        url, headers = served.apps["stream"]["url"] + query, served.ray_token()
    else:
        url, host = served.ingress("stream", query)
        headers = {**host, **served.workspace_key(), **served.ray_token()}
    reads = read_stream(url, headers)
    text = b"".join(chunk for _, chunk in reads).decode()
    lines = text.splitlines()
    assert lines[-1] == "done" and len(lines) == 6, text
    produced = [float(line.rsplit(" ", 1)[1]) for line in lines[:-1]]
    assert len(reads) >= 3, reads  # not one buffered body
    first_arrival = reads[0][0]
    assert first_arrival < produced[-1], (first_arrival, produced)  # before the last existed


def test_the_dashboard_logs_in_from_a_browser_through_the_head_url(served: Served) -> None:
    base = served.url("sentiment").split("/serve/", 1)[0]
    parts = urlsplit(base)
    host = {"Host": parts.netloc, "User-Agent": BROWSER}
    with httpx.Client(base_url=f"http://127.0.0.1:{parts.port}", headers=host, timeout=20) as web:
        # The workspace's login form (CML's login), then the dashboard's page, public.
        login = web.post(LOGIN_PATH, data={"key": served.handle.api_key, "next": "/"})
        assert login.status_code == 303
        session = login.cookies[SESSION_COOKIE]
        workspace = {"Cookie": f"{SESSION_COOKIE}={session}"}
        page = web.get("/", headers=workspace)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert web.get("/api/jobs/", headers=workspace).status_code == 401  # no Ray token yet
        # The dashboard's login: the token once, a cookie for the rest.
        auth = web.post(
            "/api/authenticate",
            headers={**workspace, "Authorization": f"Bearer {served.token}"},
        )
        assert auth.status_code == 200, auth.text
        ray_cookie = auth.cookies[RAY_COOKIE]
        both = {"Cookie": f"{SESSION_COOKIE}={session}; {RAY_COOKIE}={ray_cookie}"}
        jobs = web.get("/api/jobs/", headers=both)
        assert jobs.status_code == 200 and isinstance(jobs.json(), list)
        # The workspace key instead of the login cookie works the same.
        with_key = {**served.workspace_key(), "Cookie": f"{RAY_COOKIE}={ray_cookie}"}
        assert web.get("/api/jobs/", headers=with_key).status_code == 200


def still_answers(served: Served) -> None:
    url, host = served.ingress("sentiment")
    got = httpx.get(url, headers={**host, **served.workspace_key(), **served.ray_token()})
    assert got.status_code == 200 and got.json()["label"] == "positive"


def test_a_bad_config_is_refused_with_rays_message(served: Served) -> None:
    folder = served.config.parent
    schema_error = folder / "bad_schema.yaml"
    schema_error.write_text(
        "applications:\n- name: bad\n  route_prefix: /bad\n  import_path: sentiment:app\n"
        "  deployments:\n  - {name: Preprocess, max_ongoing_requests: many}\n"
    )
    refused = raycai(served.handle, "serve", "deploy", NAME, str(schema_error), check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "max_ongoing_requests" in refused.stderr and "Nothing changed" in refused.stderr
    assert set(serve_apps(served.handle)) == {"sentiment", "stream"}
    still_answers(served)

    missing = folder / "bad_import.yaml"
    missing.write_text(
        "applications:\n- {name: broken, route_prefix: /broken, import_path: no_such_module:app}\n"
    )
    failed = raycai(
        served.handle, "serve", "deploy", NAME, str(missing), "--timeout", "120", check=False
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "broken: DEPLOY_FAILED" in failed.stdout
    assert "no_such_module" in failed.stdout  # Ray's message, shown
    apps = serve_apps(served.handle)
    assert apps["sentiment"]["status"] == "RUNNING" and apps["stream"]["status"] == "RUNNING"
    still_answers(served)
    raycai(served.handle, "serve", "delete", NAME, "broken")


def test_deleting_one_application_leaves_the_other(served: Served) -> None:
    deleted = raycai(served.handle, "serve", "delete", NAME, "stream")
    assert "still deployed: sentiment" in deleted.stdout
    deadline = time.monotonic() + 60
    while "stream" in serve_apps(served.handle):
        assert time.monotonic() < deadline, "stream still listed"
        time.sleep(1)
    still_answers(served)
    url, host = served.ingress("stream")
    gone = httpx.get(url, headers={**host, **served.workspace_key(), **served.ray_token()})
    assert gone.status_code == 404
