"""The CML client against the real local workspace over HTTP: every call, the error
family, retries under injected faults, and creates that never duplicate."""

from __future__ import annotations

import httpx
import pytest

from raycai_core.cml.client import CMLClient, RetryPolicy
from raycai_core.cml.errors import (
    CMLAuthError,
    CMLConflict,
    CMLConnectionError,
    CMLError,
    CMLNotFound,
    CMLPermissionDenied,
    CMLRateLimited,
    CMLServerError,
)
from raycai_core.cml.models import AppStatus
from raycai_core.credentials import Credentials, Secret
from tests.fixtures.workspace import RUNTIME, new_app, wait_for, write_app
from tests.helpers import CREATE_ROUTE

pytestmark = pytest.mark.timeout(60)


async def test_application_calls(local_workspace, cml_client):
    script = write_app(local_workspace.project_dir, "serve")
    created = await cml_client.create_application(
        new_app("raycai-c1-head", "raycai-c1-head", script, environment={"RAYCAI_ROLE": "head"})
    )
    assert created.status is AppStatus.STARTING and created.runtime_identifier == RUNTIME
    assert created.environment == {"RAYCAI_ROLE": "head"}
    await cml_client.create_application(new_app("other", "other", script))

    got = await cml_client.get_application(created.id)
    assert (got.id, got.subdomain, got.script) == (created.id, "raycai-c1-head", script)
    found = await cml_client.list_applications({"name": "raycai-"})
    assert [a.id for a in found] == [created.id]
    assert [a.name for a in await cml_client.list_applications(sort="-name")] == [
        "raycai-c1-head",
        "other",
    ]
    by_subdomain = await cml_client.list_applications({"subdomain": "raycai-c1-head"})
    assert [a.id for a in by_subdomain] == [created.id]

    updated = await cml_client.update_application(
        created.id, environment={"RAYCAI_ROLE": "head", "EXTRA": "1"}, description="d"
    )
    assert updated.environment == {"RAYCAI_ROLE": "head", "EXTRA": "1"}
    assert updated.description == "d"

    await wait_for(lambda: _running(cml_client, created.id))
    stopped = await cml_client.stop_application(created.id)
    assert stopped.status in (AppStatus.STOPPING, AppStatus.STOPPED)
    await wait_for(lambda: _has_status(cml_client, created.id, AppStatus.STOPPED))
    restarted = await cml_client.restart_application(created.id)
    assert restarted.status is AppStatus.STARTING
    await wait_for(lambda: _running(cml_client, created.id))

    await cml_client.delete_application(created.id)
    with pytest.raises(CMLNotFound):
        await cml_client.get_application(created.id)
    await cml_client.delete_application(created.id)  # missing_ok
    with pytest.raises(CMLNotFound):
        await cml_client.delete_application(created.id, missing_ok=False)


async def _has_status(client: CMLClient, app_id: str, status: AppStatus) -> bool:
    return (await client.get_application(app_id)).status is status


async def _running(client: CMLClient, app_id: str) -> bool:
    return await _has_status(client, app_id, AppStatus.RUNNING)


async def test_runtimes_project_and_key(idle_workspace, cml_client):
    runtimes = await cml_client.list_runtimes()
    assert RUNTIME in {r.image_identifier for r in runtimes}
    python311 = await cml_client.list_runtimes({"kernel": "Python 3.11"})
    assert python311 and all(r.kernel == "Python 3.11" for r in python311)
    project = await cml_client.get_project()
    assert project.id == idle_workspace.project_id and project.name == "raycai-local"
    key = await cml_client.validate_key()
    assert key.valid and key.username


async def test_list_reads_every_page(idle_workspace, cml_client):
    for n in range(12):
        await cml_client.create_application(new_app(f"p-{n}", f"p-{n}", "x.py"))
    idle_workspace.reset_stats()
    apps = await cml_client.list_applications(page_size=5)
    assert sorted(a.name for a in apps) == sorted(f"p-{n}" for n in range(12))
    assert idle_workspace.stats()["total"] == 3


def _assert_no_key(exc: CMLError, key: str) -> None:
    assert key not in str(exc) and key not in repr(exc)
    assert key not in exc.server_message and key not in exc.operation


async def test_error_family(idle_workspace, cml_client):
    ws = idle_workspace
    key = ws.api_key
    wrong = Credentials(host=ws.url, api_key=Secret("not-" + key), project_id=ws.project_id)
    async with CMLClient(wrong, retry=RetryPolicy(attempts=1)) as bad_client:
        with pytest.raises(CMLAuthError) as auth:
            await bad_client.validate_key()
    assert (auth.value.status, auth.value.grpc_code) == (401, 16)
    assert "not-" + key not in str(auth.value) and "API key" in str(auth.value)

    with pytest.raises(CMLNotFound) as missing:
        await cml_client.get_application("aaaa-bbbb-cccc-dddd")
    assert (missing.value.status, missing.value.grpc_code) == (404, 5)
    assert "aaaa-bbbb-cccc-dddd" in missing.value.server_message

    await cml_client.create_application(new_app("first", "taken", "x.py"))
    with pytest.raises(CMLConflict) as conflict:
        await cml_client.create_application(new_app("second", "taken", "y.py"))
    assert (conflict.value.status, conflict.value.grpc_code) == (409, 6)
    assert "taken" in conflict.value.server_message

    async with CMLClient(idle_workspace.credentials(), retry=RetryPolicy(attempts=1)) as once:
        for status, cls, code in [
            (403, CMLPermissionDenied, 7),
            (429, CMLRateLimited, 8),
            (503, CMLServerError, 14),
        ]:
            idle_workspace.set_faults(error_rates={status: 1.0}, retry_after_s=0)
            with pytest.raises(cls) as injected:
                await once.list_applications()
            assert (injected.value.status, injected.value.grpc_code) == (status, code)
            assert injected.value.retryable == (status != 403)
            _assert_no_key(injected.value, key)
    for exc in (auth.value, missing.value, conflict.value):
        _assert_no_key(exc, key)


async def test_faults_at_configured_rates_and_safe_calls_still_succeed(idle_workspace, cml_client):
    idle_workspace.set_faults(error_rates={429: 0.1, 500: 0.1, 503: 0.1}, retry_after_s=0, seed=7)
    async with httpx.AsyncClient(
        base_url=idle_workspace.url, headers={"Authorization": f"Bearer {idle_workspace.api_key}"}
    ) as raw:
        path = f"/api/v2/projects/{idle_workspace.project_id}"
        statuses = [(await raw.get(path)).status_code for _ in range(300)]
    for status in (429, 500, 503):
        assert 10 <= statuses.count(status) <= 55, (status, statuses.count(status))
    assert statuses.count(200) + sum(statuses.count(s) for s in (429, 500, 503)) == 300
    stats = idle_workspace.stats()
    assert stats["injected"]["429"] == statuses.count(429)
    assert stats["by_status"]["200"] == statuses.count(200)

    for _ in range(10):
        assert (await cml_client.get_project()).id == idle_workspace.project_id
        assert (await cml_client.validate_key()).valid


async def test_faults_limited_to_routes_leave_the_others_alone(idle_workspace, cml_client):

    idle_workspace.set_faults(error_rates={503: 1.0}, routes=[CREATE_ROUTE])
    async with httpx.AsyncClient(
        base_url=idle_workspace.url, headers={"Authorization": f"Bearer {idle_workspace.api_key}"}
    ) as raw:
        apps = f"/api/v2/projects/{idle_workspace.project_id}/applications"
        assert (await raw.get(apps)).status_code == 200
        body = {"name": "r", "subdomain": "r", "script": "x.py"}
        assert (await raw.post(apps, json=body)).status_code == 503
        assert (await raw.put("/_local/faults", json={"routes": "GET /"})).status_code == 400
        shown = await raw.put("/_local/faults", json={"latency_s": 0.1, "routes": [CREATE_ROUTE]})
        assert shown.json()["routes"] == [CREATE_ROUTE]
    assert idle_workspace.stats()["injected"] == {"503": 1}
    assert await cml_client.list_applications() == []


async def test_dropped_connections(idle_workspace, cml_client):
    idle_workspace.set_faults(drop_rate=0.3, seed=3)
    async with httpx.AsyncClient(
        base_url=idle_workspace.url, headers={"Authorization": f"Bearer {idle_workspace.api_key}"}
    ) as raw:
        outcomes = []
        for _ in range(60):
            try:
                outcomes.append((await raw.post("/api/v2/auth/validate_key", json={})).status_code)
            except httpx.TransportError:
                outcomes.append("dropped")
    assert 5 <= outcomes.count("dropped") <= 35 and outcomes.count(200) >= 25
    assert idle_workspace.stats()["injected"]["dropped"] == outcomes.count("dropped")

    for _ in range(10):
        assert (await cml_client.validate_key()).valid
    async with CMLClient(idle_workspace.credentials(), retry=RetryPolicy(attempts=1)) as once:
        idle_workspace.set_faults(drop_rate=1.0)
        with pytest.raises(CMLConnectionError) as dropped:
            await once.get_project()
        _assert_no_key(dropped.value, idle_workspace.api_key)


async def test_create_under_faults_makes_no_duplicates(idle_workspace, cml_client):
    # Lost responses: the app is created but the client never hears it; then it retries.
    idle_workspace.set_faults(lost_response_rate=0.4, error_rates={503: 0.15}, seed=11)
    returned = {}
    for n in range(8):
        app = await cml_client.create_application(new_app(f"dup-{n}", f"dup-{n}", "x.py"))
        assert app.subdomain == f"dup-{n}"
        returned[app.subdomain] = app.id
    assert idle_workspace.stats()["injected"].get("lost", 0) > 0
    idle_workspace.set_faults()
    apps = await cml_client.list_applications()
    assert sorted(a.subdomain for a in apps) == sorted(f"dup-{n}" for n in range(8))
    assert {a.subdomain: a.id for a in apps} == returned  # each create returned the one app


async def test_create_under_every_fault_at_once_makes_no_duplicates(idle_workspace):
    """Lost responses, dropped connections, 429 (with Retry-After 0), 500 and 503 together:
    the create's tries, its look-ups and the retries of both still make one app per node."""
    idle_workspace.set_faults(
        lost_response_rate=0.3,
        drop_rate=0.1,
        error_rates={429: 0.1, 500: 0.1, 503: 0.1},
        retry_after_s=0,
        seed=5,
    )
    retry = RetryPolicy(attempts=50, initial_wait=0.01, max_wait=0.05, deadline=30.0)
    async with CMLClient(idle_workspace.credentials(), retry=retry) as client:
        for n in range(10):
            app = await client.create_application(new_app(f"all-{n}", f"all-{n}", "x.py"))
            assert (app.subdomain, app.name) == (f"all-{n}", f"all-{n}")
        injected = idle_workspace.stats()["injected"]
        assert injected.get("lost", 0) > 0 and injected.get("dropped", 0) > 0, injected
        idle_workspace.set_faults()
        apps = await client.list_applications()
    assert sorted(a.subdomain for a in apps) == sorted(f"all-{n}" for n in range(10))


def test_the_wait_grows_with_jitter_and_never_undercuts_retry_after():
    policy = RetryPolicy(attempts=6, initial_wait=0.5, max_wait=4.0, deadline=60.0)
    assert policy.wait(1, None, 0.0) == 0.0  # full jitter: anywhere from nothing...
    assert policy.wait(1, None, 0.999) < 0.5  # ...to the current ceiling
    assert policy.wait(3, None, 0.999) == pytest.approx(2.0, rel=0.01)
    assert policy.wait(10, None, 0.999) == pytest.approx(4.0, rel=0.01)  # capped
    assert policy.wait(1, 7.0, 0.2) == 7.0  # the server said 7 s: beyond max_wait too
    assert policy.wait(6, 1.0, 0.999) == pytest.approx(4.0, rel=0.01)


async def test_a_retry_after_past_the_deadline_gives_up_at_once(idle_workspace):
    """The server's Retry-After is honoured: when it points past the deadline, the create
    (like any call) stops after one try and says why, instead of hammering the server."""
    idle_workspace.set_faults(error_rates={429: 1.0}, retry_after_s=30)
    retry = RetryPolicy(attempts=6, initial_wait=0.01, max_wait=0.05, deadline=5.0)
    async with CMLClient(idle_workspace.credentials(), retry=retry) as client:
        idle_workspace.reset_stats()
        with pytest.raises(CMLRateLimited) as refused:
            await client.create_application(new_app("late", "late", "x.py"))
        assert idle_workspace.stats()["by_route"][CREATE_ROUTE] == 1
        assert refused.value.retry_after == 30
        assert "the server asked to retry in 30 s, past the 5 s deadline" in str(refused.value)
        with pytest.raises(CMLRateLimited, match="gave up after 1 try"):
            await client.get_project()


async def test_a_create_that_keeps_failing_gives_up_at_its_deadline(idle_workspace):
    idle_workspace.set_faults(error_rates={503: 1.0})
    retry = RetryPolicy(attempts=100_000, initial_wait=0.01, max_wait=0.05, deadline=1.0)
    async with CMLClient(idle_workspace.credentials(), retry=retry) as client:
        idle_workspace.reset_stats()
        with pytest.raises(CMLServerError) as failed:
            await client.create_application(new_app("never", "never", "x.py"))
    tries = idle_workspace.stats()["by_route"][CREATE_ROUTE]
    assert 1 < tries < 100_000
    message = str(failed.value)
    assert f"gave up after {tries} tries in " in message
    assert "the next try would start past the 1 s deadline" in message
    idle_workspace.set_faults()


async def test_request_counter(idle_workspace, cml_client):
    idle_workspace.reset_stats()
    await cml_client.validate_key()
    await cml_client.get_project()
    await cml_client.get_project()
    await cml_client.list_applications()
    async with httpx.AsyncClient(
        base_url=idle_workspace.url, headers={"Authorization": f"Bearer {idle_workspace.api_key}"}
    ) as raw:
        stats = (await raw.get("/_local/stats")).json()  # /_local is never counted
        assert stats["total"] == 4
        assert stats["by_route"] == {
            "POST /api/v2/auth/validate_key": 1,
            "GET /api/v2/projects/{project_id}": 2,
            "GET /api/v2/projects/{project_id}/applications": 1,
        }
        faults = await raw.put("/_local/faults", json={"error_rates": {"500": 0.5}, "seed": 1})
        assert faults.json()["error_rates"] == {"500": 0.5}
        assert (await raw.put("/_local/faults", json={"bogus": 1})).status_code == 400
        assert (await raw.put("/_local/faults", json={})).json()["error_rates"] == {}
        config = await raw.put("/_local/config", json={"start_delay_s": 0.5})
        assert config.json()["start_delay_s"] == 0.5
        assert (await raw.put("/_local/config", json={"port": 1})).status_code == 400
        reset = (await raw.post("/_local/stats/reset")).json()
        assert reset["total"] == 0
