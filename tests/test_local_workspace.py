"""The local workspace over HTTP with real app processes: lifecycle, quota, persistence,
auth, listing semantics, validation, subdomains and project files."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from raycai_core.cml.client import CMLClient
from raycai_core.local import WorkspaceConfig, run_workspace_in_thread
from tests.fixtures.workspace import (
    FAST_CONFIG,
    RUNTIME,
    new_app,
    session_pids,
    wait_for,
    write_app,
)

pytestmark = pytest.mark.timeout(60)


async def _status(client: CMLClient, app_id: str) -> str:
    return (await client.get_application(app_id)).status.value


async def _wait_status(client: CMLClient, app_id: str, wanted: str, timeout: float = 15.0):
    async def reached() -> bool:
        return await _status(client, app_id) == wanted

    await wait_for(reached, timeout)


def _read(path: str) -> str:
    return Path(path).read_text()


def _body(name: str, subdomain: str = "", script: str = "serve.py", **fields) -> dict:
    return {
        "name": name,
        "subdomain": subdomain,
        "script": script,
        "runtime_identifier": RUNTIME,
        **fields,
    }


# -- processes and lifecycle -------------------------------------------------------------


async def test_serving_apps_run_with_cml_variables(local_workspace, cml_client):
    project_dir = local_workspace.project_dir
    script = write_app(project_dir, "serve")
    apps = [
        await cml_client.create_application(
            new_app(f"web-{tag}", f"web-{tag}", script, environment={"APP_TAG": tag, "X": "1"})
        )
        for tag in ("a", "b")
    ]
    for app in apps:
        assert app.status.value == "starting"
        await _wait_status(cml_client, app.id, "running")
    records = [json.loads((project_dir / f"env-{tag}.json").read_text()) for tag in ("a", "b")]
    ips = {r["env"]["CDSW_IP_ADDRESS"] for r in records}
    ports = [r["env"][k] for r in records for k in ("CDSW_APP_PORT", "CDSW_READONLY_PORT")]
    assert len(ips) == 2 and all(ip.startswith("127.0.") and ip != "127.0.0.1" for ip in ips)
    assert len(set(ports)) == 4
    for record, app in zip(records, apps, strict=True):
        env = record["env"]
        assert env["CDSW_PROJECT_ID"] == local_workspace.project_id
        assert env["CDSW_PROJECT"] == "raycai-local"
        assert env["CDSW_DOMAIN"] == "localhost:" + local_workspace.url.rsplit(":", 1)[1]
        assert env["HOME"] == str(project_dir) == record["cwd"]
        assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
        assert env["X"] == "1"
        assert record["sid"] == record["pid"]  # its own session
        # The platform's workload key, as CML gives it; never the user's own key.
        assert "CML_API_KEY" not in env
        assert env["CDSW_APIV2_KEY"] == local_workspace.workload_key != local_workspace.api_key
        assert env["CDSW_API_URL"] == f"{local_workspace.url}/api/v1"
        assert local_workspace.api_key not in json.dumps(env)
        info = local_workspace.app_info(app.id)
        assert info["pid"] == record["pid"] and info["ip"] == env["CDSW_IP_ADDRESS"]
        got = await cml_client.get_application(app.id)
        assert got.running_at is not None and got.starting_at is not None


async def test_failing_app_is_restarted_then_stays_failed(local_workspace, cml_client):
    local_workspace.update_config(restart_attempts=2)
    script = write_app(local_workspace.project_dir, "exit1")
    app = await cml_client.create_application(new_app("fails", "fails", script))
    info = await wait_for(
        lambda: (i := local_workspace.app_info(app.id))["phase"] == "failed" and i, 60
    )
    assert info["restarts"] == 2 and info["starts"] == 3
    got = await cml_client.get_application(app.id)
    assert got.status.value == "failed" and got.stopped_at is not None
    log = _read(info["log"])
    assert log.count("failing on purpose") == 3
    # A restart asked for by a user starts it again, with a fresh count.
    await cml_client.restart_application(app.id)
    await wait_for(lambda: local_workspace.app_info(app.id)["starts"] == 4)


async def test_missing_script_is_created_and_fails(local_workspace, cml_client):
    local_workspace.update_config(restart_attempts=0)
    app = await cml_client.create_application(new_app("ghost", "ghost", "no/such/script.py"))
    assert app.status.value == "starting"
    await _wait_status(cml_client, app.id, "failed")


async def test_stop_restart_delete_leave_no_process(local_workspace, cml_client):
    script = write_app(local_workspace.project_dir, "serve_with_child")
    app = await cml_client.create_application(
        new_app("kids", "kids", script, environment={"APP_TAG": "kids"})
    )
    await _wait_status(cml_client, app.id, "running")
    first = local_workspace.app_info(app.id)
    sid = first["pid"]
    await wait_for(lambda: len(session_pids(sid)) >= 2)  # the app and its child

    stopped = await cml_client.stop_application(app.id)
    assert stopped.status.value in ("stopping", "stopped")
    await _wait_status(cml_client, app.id, "stopped")
    assert session_pids(sid) == []

    await cml_client.restart_application(app.id)
    await _wait_status(cml_client, app.id, "running")
    second = local_workspace.app_info(app.id)
    assert second["pid"] != sid and second["ip"] != first["ip"]  # a new pod IP
    # :restart on a running app stops it, then starts it again.
    await cml_client.restart_application(app.id)
    await wait_for(lambda: local_workspace.app_info(app.id)["starts"] == 3)
    await _wait_status(cml_client, app.id, "running")
    third = local_workspace.app_info(app.id)
    assert session_pids(second["pid"]) == []

    await cml_client.delete_application(app.id)
    assert await cml_client.list_applications() == []
    await wait_for(lambda: session_pids(third["pid"]) == [])


async def test_app_ignoring_sigterm_is_killed_after_the_grace(local_workspace, cml_client):
    local_workspace.update_config(stop_grace_s=0.3)
    (local_workspace.project_dir / "stubborn.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
    )
    app = await cml_client.create_application(new_app("stubborn", "stubborn", "stubborn.py"))
    pid = await wait_for(lambda: local_workspace.app_info(app.id)["pid"])
    assert await _status(cml_client, app.id) == "starting"  # never answers HTTP
    await cml_client.stop_application(app.id)
    await _wait_status(cml_client, app.id, "stopped")
    assert session_pids(pid) == []


async def test_workspace_restart_keeps_apps_and_restarts_running_ones(tmp_path):
    data_dir = tmp_path / "ws"
    config = WorkspaceConfig(**FAST_CONFIG)
    with run_workspace_in_thread(data_dir, config) as first:
        script = write_app(first.project_dir, "serve")
        async with CMLClient(first.credentials()) as client:
            kept = await client.create_application(new_app("kept", "kept", script))
            parked = await client.create_application(new_app("parked", "parked", script))
            await _wait_status(client, kept.id, "running")
            await client.stop_application(parked.id)
            await _wait_status(client, parked.id, "stopped")
        old_pid = first.app_info(kept.id)["pid"]
        key, project_id = first.api_key, first.project_id
    assert session_pids(old_pid) == []  # stopping the workspace stopped its processes
    assert oct((data_dir / "state.json").stat().st_mode & 0o777) == "0o600"

    with run_workspace_in_thread(data_dir, config) as second:
        assert (second.api_key, second.project_id) == (key, project_id)
        async with CMLClient(second.credentials()) as client:
            names = {a.name: a for a in await client.list_applications()}
            assert set(names) == {"kept", "parked"}
            await _wait_status(client, kept.id, "running")
            assert await _status(client, parked.id) == "stopped"
        assert second.app_info(kept.id)["pid"] != old_pid


async def test_quota_keeps_apps_starting_until_resources_free(local_workspace, cml_client):
    local_workspace.update_config(quota_cpu=2)
    script = write_app(local_workspace.project_dir, "serve")
    big = await cml_client.create_application(new_app("big", "big", script, cpu=2))
    await _wait_status(cml_client, big.id, "running")
    small = await cml_client.create_application(new_app("small", "small", script, cpu=1))
    await wait_for(lambda: local_workspace.app_info(small.id)["waiting_for_quota"])
    assert local_workspace.app_info(small.id)["pid"] is None
    assert await _status(cml_client, small.id) == "starting"
    await cml_client.stop_application(big.id)
    await _wait_status(cml_client, small.id, "running")


async def test_start_delay_is_respected(local_workspace, cml_client):
    local_workspace.update_config(start_delay_s=0.4)
    script = write_app(local_workspace.project_dir, "serve")
    app = await cml_client.create_application(new_app("slow", "slow", script))
    await _wait_status(cml_client, app.id, "running")
    got = await cml_client.get_application(app.id)
    assert (got.running_at - got.starting_at).total_seconds() >= 0.4


# -- API semantics (idle_workspace: no app process starts) ------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc"])
async def test_requests_without_the_key_get_401(idle_workspace, header):
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(base_url=idle_workspace.url, headers=headers) as raw:
        for method, path in [
            ("GET", f"/api/v2/projects/{idle_workspace.project_id}/applications"),
            ("POST", "/api/v2/auth/validate_key"),
            ("GET", "/_local/stats"),
        ]:
            response = await raw.request(method, path)
            assert response.status_code == 401
            body = response.json()
            assert body["code"] == 16 and body["message"] and body["details"] == []
            assert body["error"] == body["message"]
            assert idle_workspace.api_key not in response.text


async def test_pagination_across_pages(idle_workspace, workspace_http, cml_client):
    for n in range(25):
        await cml_client.create_application(new_app(f"app-{n:02d}", f"app-{n:02d}", "x.py"))
    path = f"/projects/{idle_workspace.project_id}/applications"
    default = (await workspace_http.get(path)).json()
    assert len(default["applications"]) == 10 and default["next_page_token"]

    seen, token, pages = [], "", 0
    while True:
        params = {"page_size": 10, **({"page_token": token} if token else {})}
        body = (await workspace_http.get(path, params=params)).json()
        seen += [a["name"] for a in body["applications"]]
        pages += 1
        token = body.get("next_page_token", "")
        if not token:
            break
    assert pages == 3 and seen == [f"app-{n:02d}" for n in range(25)]
    assert len(await cml_client.list_applications(page_size=7)) == 25

    for params in ({"page_token": "garbage"}, {"page_size": "ten"}, {"page_size": -1}):
        response = await workspace_http.get(path, params=params)
        assert response.status_code == 400 and response.json()["code"] == 3
    # A token belongs to the query it came from.
    response = await workspace_http.get(
        path, params={"page_token": default["next_page_token"], "sort": "-name"}
    )
    assert response.status_code == 400


async def test_search_filter_and_sort(idle_workspace, workspace_http, cml_client):
    for name, sub in [("Ray-head", "rh"), ("ray-worker", "rw"), ("other", "ot")]:
        await cml_client.create_application(new_app(name, sub, "x.py", description=f"d-{sub}"))
    names = lambda apps: sorted(a.name for a in apps)  # noqa: E731
    assert names(await cml_client.list_applications({"name": "ray-"})) == ["ray-worker"]
    assert names(await cml_client.list_applications({"name": "Ray"})) == ["Ray-head"]
    assert names(await cml_client.list_applications({"description": "d-r"})) == [
        "Ray-head",
        "ray-worker",
    ]
    assert len(await cml_client.list_applications({"status": "starting"})) == 3
    assert await cml_client.list_applications({"status": "running"}) == []
    assert names(await cml_client.list_applications({"creator.username": getpass.getuser()})) == [
        "Ray-head",
        "other",
        "ray-worker",
    ]
    ordered = await cml_client.list_applications(sort="-name")
    assert [a.name for a in ordered] == ["ray-worker", "other", "Ray-head"]
    ordered = await cml_client.list_applications(sort="+description")
    assert [a.subdomain for a in ordered] == ["ot", "rh", "rw"]

    path = f"/projects/{idle_workspace.project_id}/applications"
    for bad in ['{"name":', '["name"]', '{"nope": "x"}', '{"status": "Running"}', '"x"']:
        response = await workspace_http.get(path, params={"search_filter": bad})
        assert response.status_code == 400, bad
        assert response.json()["code"] == 3
    response = await workspace_http.get(path, params={"sort": "id"})
    assert response.status_code == 400


async def test_subdomains_are_unique_across_the_workspace(idle_workspace, workspace_http):
    path = f"/projects/{idle_workspace.project_id}/applications"
    first = await workspace_http.post(path, json=_body("one", "shared"))
    assert first.status_code == 200
    clash = await workspace_http.post(path, json=_body("two", "shared"))
    assert clash.status_code == 409 and clash.json()["code"] == 6

    other = (await workspace_http.post("/projects", json={"name": "other"})).json()
    assert other["id"] != idle_workspace.project_id
    across = await workspace_http.post(
        f"/projects/{other['id']}/applications", json=_body("three", "shared")
    )
    assert across.status_code == 409 and across.json()["code"] == 6

    for bad in ["Upper", "-lead", "trail-", "a--b", "a_b", "x" * 64]:
        response = await workspace_http.post(path, json=_body("bad", bad))
        assert response.status_code == 400, bad
    generated = (await workspace_http.post(path, json=_body("gen"))).json()
    assert generated["subdomain"]
    # PATCH cannot take another app's subdomain either.
    app_id = first.json()["id"]
    response = await workspace_http.patch(f"{path}/{app_id}", json={"subdomain": "shared"})
    assert response.status_code == 200
    response = await workspace_http.patch(
        f"{path}/{app_id}", json={"subdomain": generated["subdomain"]}
    )
    assert response.status_code == 409


async def test_request_bodies_are_checked(idle_workspace, workspace_http):
    path = f"/projects/{idle_workspace.project_id}/applications"
    cases = {
        "unknown field": (_body("a", "a1", colour="red"), '"colour"'),
        "wrong type": (_body("a", "a2", cpu="lots"), '"cpu"'),
        "env not strings": (_body("a", "a3", environment={"N": 1}), '"environment"'),
        "no script": (_body("a", "a4", script=""), "script"),
        "escaping script": (_body("a", "a5", script="../x.py"), "script"),
        "no runtime": (_body("a", "a6", runtime_identifier=""), "runtime"),
        "no name": (_body("", "a7"), "name"),
    }
    for label, (body, mentions) in cases.items():
        response = await workspace_http.post(path, json=body)
        assert response.status_code == 400, label
        assert mentions in response.json()["message"], label
    response = await workspace_http.post(path, content=b"{not json")
    assert response.status_code == 400

    created = await workspace_http.post(path, json=_body("ok", "ok1", environment={"A": "b"}))
    app = created.json()
    assert json.loads(app["environment"]) == {"A": "b"}
    url = f"{path}/{app['id']}"
    assert (await workspace_http.patch(url, json={"environment": {"A": "b"}})).status_code == 400
    patched = await workspace_http.patch(url, json={"environment": '{"C": "d"}', "cpu": 2})
    assert json.loads(patched.json()["environment"]) == {"C": "d"} and patched.json()["cpu"] == 2
    missing = await workspace_http.get(f"{path}/zzzz-zzzz-zzzz-zzzz")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    unknown_route = await workspace_http.get("/no/such/route")
    assert unknown_route.status_code == 404 and unknown_route.json()["code"] == 5


async def test_projects(idle_workspace, workspace_http):
    listed = (await workspace_http.get("/projects")).json()["projects"]
    assert [p["name"] for p in listed] == ["raycai-local"]
    created = await workspace_http.post("/projects", json={"name": "second", "description": "x"})
    project = created.json()
    assert (await workspace_http.post("/projects", json={"name": "second"})).status_code == 409
    patched = await workspace_http.patch(
        f"/projects/{project['id']}", json={"description": "changed", "environment": '{"A":"1"}'}
    )
    assert patched.json()["description"] == "changed"
    filtered = await workspace_http.get("/projects", params={"search_filter": '{"name":"sec"}'})
    assert [p["id"] for p in filtered.json()["projects"]] == [project["id"]]
    project_dir = idle_workspace.data_dir / "projects" / project["id"]
    assert project_dir.is_dir()
    assert (await workspace_http.delete(f"/projects/{project['id']}")).json() == {}
    assert (await workspace_http.get(f"/projects/{project['id']}")).status_code == 404
    await wait_for(lambda: not project_dir.exists())


async def test_project_files(idle_workspace, workspace_http):
    files = f"/projects/{idle_workspace.project_id}/files"
    upload = await workspace_http.post(files, files={"dir/a.txt": ("a.txt", b"one")})
    assert upload.status_code == 200
    await workspace_http.post(files, files={"dir/a.txt": ("a.txt", b"two")})
    assert (idle_workspace.project_dir / "dir" / "a.txt").read_bytes() == b"one"
    assert (idle_workspace.project_dir / "dir" / "a(1).txt").read_bytes() == b"two"

    listed = (await workspace_http.get(f"{files}/dir")).json()["files"]
    assert listed == [
        {"path": "dir/a(1).txt", "is_dir": False, "file_size": "3"},
        {"path": "dir/a.txt", "is_dir": False, "file_size": "3"},
    ]
    root = (await workspace_http.get(f"{files}/.")).json()["files"]
    assert {"path": "dir", "is_dir": True} in root
    download = await workspace_http.post(f"{files}/dir/a.txt:download")
    assert download.content == b"one"
    renamed = await workspace_http.patch(f"{files}/dir/a(1).txt", json={"path": "dir/b.txt"})
    assert renamed.json()["path"] == "dir/b.txt"
    assert (await workspace_http.delete(f"{files}/dir/b.txt")).json() == {}
    assert (await workspace_http.get(f"{files}/dir/b.txt")).status_code == 404

    escape = await workspace_http.post(files, files={"../escape.txt": ("x", b"x")})
    assert escape.status_code == 400
    assert not (idle_workspace.project_dir.parent / "escape.txt").exists()
    # Encoded, so that the client does not resolve the dots itself.
    for method, path in [("GET", "%2E%2E%2F%2E%2E"), ("POST", "..%2F..%2Fstate.json:download")]:
        response = await workspace_http.request(method, f"{files}/{path}")
        assert response.status_code in (400, 404), path
        assert idle_workspace.api_key not in response.text
