"""`raycai serve deploy|delete|status`: the config's merge, rewrites and listen overwrite
(pure), and the commands against a stand-in Ray 2.60 dashboard (tests/fake_dashboard.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raycai_core.cluster.layout import ClusterPaths
from raycai_core.naming import HEAD_NODE, subdomain
from raycai_core.spec.cluster import name_problem
from raycai_core.work.serve_config import (
    ServeConfigError,
    apply_listen,
    merge,
    parse_serve_config,
    rewrite_paths,
    without_app,
)
from tests.fake_dashboard import TOKEN, FakeDashboard, running_dashboard, serve_running
from tests.test_work_client import publish_fake, run_cli

pytestmark = pytest.mark.integration


def app(name: str, route: str = "/", import_path: str = "m:app", **more: object) -> dict:
    return {"name": name, "route_prefix": route, "import_path": import_path, **more}


# -- pure ------------------------------------------------------------------------------------


def test_merge_by_application_name() -> None:
    a, b, a2 = app("a", "/a"), app("b", "/b"), app("a", "/a2", "m2:app")
    stored = merge(None, {"applications": [a], "logging_config": {"log_level": "INFO"}})
    stored = merge(stored, {"applications": [b]})
    assert [x["route_prefix"] for x in stored["applications"]] == ["/a", "/b"]
    stored = merge(stored, {"applications": [a2]})
    assert stored["applications"] == [a2, b]  # replaced in place, b kept
    assert stored["logging_config"] == {"log_level": "INFO"}  # kept from the first file
    assert without_app(stored, "a")["applications"] == [b]
    with pytest.raises(ServeConfigError, match="'c' is not in the cluster's stored"):
        without_app(stored, "c")


def test_listen_is_raycais_and_each_overwrite_is_said() -> None:
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 9000, "root_path": "/x"},
        "applications": [app("a")],
    }
    out, notes = apply_listen(config, 8123)
    assert out["proxy_location"] == "HeadOnly"
    assert out["http_options"] == {"host": "127.0.0.1", "port": 8123, "root_path": "/x"}
    assert len(notes) == 3
    assert any("http_options.port: 9000 overwritten with 8123" in n for n in notes)
    assert config["http_options"]["port"] == 9000  # the input is not changed
    out, notes = apply_listen({"applications": [app("a")]}, 8123, "0.0.0.0")
    assert notes == [] and out["http_options"]["host"] == "0.0.0.0"


def test_paths_become_local_uris_and_missing_ones_are_refused(tmp_path: Path) -> None:
    (tmp_path / "serving" / "lib").mkdir(parents=True)
    (tmp_path / "serving" / "model.py").write_text("")
    base = tmp_path / "serving"
    config = {
        "applications": [
            app(
                "a",
                runtime_env={"working_dir": ".", "py_modules": ["lib", "s3://b/m.zip"]},
                deployments=[
                    {"name": "D", "ray_actor_options": {"runtime_env": {"working_dir": "lib"}}}
                ],
            )
        ]
    }
    out, notes = rewrite_paths(config, base, tmp_path)
    env = out["applications"][0]["runtime_env"]
    assert env["working_dir"] == f"local://{base.resolve()}"
    assert env["py_modules"] == [f"local://{base.resolve() / 'lib'}", "s3://b/m.zip"]
    deployment_env = out["applications"][0]["deployments"][0]["ray_actor_options"]["runtime_env"]
    assert deployment_env["working_dir"] == f"local://{base.resolve() / 'lib'}"
    assert len(notes) == 3
    for value, problem in (
        ("nope", "does not exist"),
        ("model.py", "is not a directory"),
        ("../..", "outside the project directory"),
    ):
        bad = {"applications": [app("a", runtime_env={"working_dir": value})]}
        with pytest.raises(ServeConfigError, match=problem):
            rewrite_paths(bad, base, tmp_path)


def test_config_file_checks() -> None:
    assert parse_serve_config("applications:\n- import_path: m:app\n")["applications"]
    for text, problem in (
        ("applications: [", "not valid YAML"),
        ("- a\n", "not a Serve config"),
        ("import_path: m:app\n", "put it under `applications:`"),
        ("applications:\n- name: a\n", "no import_path"),
        ("applications:\n- import_path: m:a\n- import_path: m:b\n", "two applications"),
    ):
        with pytest.raises(ServeConfigError, match=problem):
            parse_serve_config(text)


def test_serve_subcommands_are_reserved_cluster_names() -> None:
    for name in ("deploy", "delete", "status"):
        assert "reserved" in (name_problem(name) or "")


# -- the commands against the stand-in dashboard ---------------------------------------------------


@pytest.fixture
async def dash() -> AsyncIterator[FakeDashboard]:
    async with running_dashboard() as fake:
        yield fake


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def stored(paths: ClusterPaths) -> dict:
    return json.loads(paths.serve_json.read_text())


async def test_deploy_merges_and_stores_only_what_ray_accepted(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = publish_fake(tmp_path, dash)
    (tmp_path / "serving" / "code").mkdir(parents=True)
    a = write(
        tmp_path / "serving" / "a.yaml",
        "proxy_location: EveryNode\nhttp_options: {host: 0.0.0.0, port: 9000}\n"
        "applications:\n- name: a\n  route_prefix: /a\n  import_path: m:app\n"
        "  runtime_env: {working_dir: code}\n",
    )
    deployed = await run_cli(tmp_path, "serve", "deploy", "demo", str(a))
    assert deployed.returncode == 0, deployed.stderr
    assert "a: RUNNING" in deployed.stdout
    assert "proxy_location: 'EveryNode' overwritten with 'HeadOnly'" in deployed.stderr
    assert "http_options.host: '0.0.0.0' overwritten with '127.0.0.1'" in deployed.stderr
    assert "http_options.port: 9000 overwritten with 8000" in deployed.stderr
    sent = dash.serve_configs[-1]
    code_uri = f"local://{(tmp_path / 'serving' / 'code').resolve()}"
    assert sent["applications"][0]["runtime_env"]["working_dir"] == code_uri
    assert sent["http_options"] == {"host": "127.0.0.1", "port": 8000}
    assert stored(paths) == sent

    b = write(
        tmp_path / "b.yaml", "applications:\n- {name: b, route_prefix: /b, import_path: m:b}\n"
    )
    assert (await run_cli(tmp_path, "serve", "deploy", "demo", str(b), "--no-wait")).returncode == 0
    assert [x["name"] for x in dash.serve_configs[-1]["applications"]] == ["a", "b"]
    a2 = write(
        tmp_path / "a2.yaml", "applications:\n- {name: a, route_prefix: /a2, import_path: m:a}\n"
    )
    assert (await run_cli(tmp_path, "serve", "deploy", "demo", str(a2))).returncode == 0
    apps = dash.serve_configs[-1]["applications"]
    assert [(x["name"], x["route_prefix"]) for x in apps] == [("a", "/a2"), ("b", "/b")]

    # A config Ray refuses: its text shown, nothing sent changes anything, serve.json kept.
    before = stored(paths)
    bad = write(
        tmp_path / "bad.yaml", "applications:\n- {name: c, route_prefix: c, import_path: m:c}\n"
    )
    refused = await run_cli(tmp_path, "serve", "deploy", "demo", str(bad))
    assert refused.returncode == 2
    assert "Route prefix must start with" in refused.stderr and "Nothing changed" in refused.stderr
    assert stored(paths) == before and set(dash.serve["applications"]) == {"a", "b"}

    # A file with a path that does not exist is refused before anything is sent.
    count = len(dash.serve_configs)
    missing = write(
        tmp_path / "m.yaml",
        "applications:\n- {name: d, import_path: m:d, runtime_env: {py_modules: [gone]}}\n",
    )
    refused = await run_cli(tmp_path, "serve", "deploy", "demo", str(missing))
    assert refused.returncode == 2 and "does not exist" in refused.stderr
    assert len(dash.serve_configs) == count

    deleted = await run_cli(tmp_path, "serve", "delete", "demo", "a")
    assert deleted.returncode == 0, deleted.stderr
    assert [x["name"] for x in stored(paths)["applications"]] == ["b"]
    assert set(dash.serve["applications"]) == {"b"}


async def test_deploy_failed_is_reported_with_its_message(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = publish_fake(tmp_path, dash)
    config = write(tmp_path / "f.yaml", "applications:\n- {name: f, import_path: 'fail:app'}\n")
    failed = await run_cli(tmp_path, "serve", "deploy", "demo", str(config), "--timeout", "20")
    assert failed.returncode == 1
    assert "f: DEPLOY_FAILED" in failed.stdout and "No module named 'f_missing'" in failed.stdout
    assert stored(paths)["applications"][0]["name"] == "f"  # Ray accepted it: it is the state


async def test_shutdown_asks_first(dash: FakeDashboard, tmp_path: Path) -> None:
    paths = publish_fake(tmp_path, dash)
    config = write(tmp_path / "a.yaml", "applications:\n- {name: a, import_path: m:a}\n")
    assert (await run_cli(tmp_path, "serve", "deploy", "demo", str(config))).returncode == 0
    kept = await run_cli(tmp_path, "serve", "delete", "demo")  # no terminal: no yes
    assert kept.returncode != 0 and paths.serve_json.is_file()
    assert ("DELETE", "/api/serve/applications/") not in dash.requests
    gone = await run_cli(tmp_path, "serve", "delete", "demo", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not paths.serve_json.exists() and dash.serve["applications"] == {}


async def test_status_prints_urls_and_a_curl_line_without_the_token(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = publish_fake(tmp_path, dash, app_port=8090)  # type: ignore[arg-type]
    config = write(
        tmp_path / "a.yaml", "applications:\n- {name: a, route_prefix: /hello, import_path: m:a}\n"
    )
    assert (await run_cli(tmp_path, "serve", "deploy", "demo", str(config))).returncode == 0
    cml = f"https://{subdomain('proj-1', 'demo', HEAD_NODE)}.ml.example.com/serve/hello"
    curl = (
        'curl -H "Authorization: Bearer $CDSW_APIV2_KEY" -H "X-Ray-Authorization: Bearer '
        f'$(cat {paths.auth_token})" {cml}'
    )
    for args in (("serve", "demo"), ("serve", "status", "demo")):
        shown = await run_cli(tmp_path, *args)
        assert shown.returncode == 0, shown.stderr
        assert cml in shown.stdout and "http://127.0.0.1:8090/serve/hello" in shown.stdout
        assert curl in shown.stdout
        assert TOKEN not in shown.stdout + shown.stderr
    as_json = json.loads((await run_cli(tmp_path, "serve", "demo", "--json")).stdout)
    entry = as_json["applications"][0]
    assert entry["cml_url"] == cml and entry["curl"] == curl and as_json["warnings"] == []
    revealed = await run_cli(tmp_path, "serve", "status", "demo", "--show-token")
    assert f'X-Ray-Authorization: Bearer {TOKEN}" {cml}' in revealed.stdout


async def test_pod_listening_is_warned_about_and_deployed_open(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    paths = publish_fake(tmp_path, dash, serve_port=8765)  # type: ignore[arg-type]
    paths.cluster_json.write_text(json.dumps({"spec": {"serve": {"listen": "pod"}}}))
    config = write(tmp_path / "a.yaml", "applications:\n- {name: a, import_path: m:a}\n")
    assert (await run_cli(tmp_path, "serve", "deploy", "demo", str(config))).returncode == 0
    assert dash.serve_configs[-1]["http_options"] == {"host": "0.0.0.0", "port": 8765}
    shown = await run_cli(tmp_path, "serve", "demo")
    assert '[serve] listen = "pod"' in shown.stderr and "http://127.0.0.1:8765" in shown.stderr


async def test_a_serve_started_elsewhere_is_said_to_listen_elsewhere(
    dash: FakeDashboard, tmp_path: Path
) -> None:
    publish_fake(tmp_path, dash)
    dash.serve = serve_running()
    dash.serve["http_options"] = {"host": "0.0.0.0", "port": 8000}  # a driver's serve.run
    config = write(tmp_path / "a.yaml", "applications:\n- {name: a, import_path: m:a}\n")
    deployed = await run_cli(tmp_path, "serve", "deploy", "demo", str(config))
    assert deployed.returncode == 0, deployed.stderr
    assert "Serve already runs with its proxy on 0.0.0.0:8000" in deployed.stderr
    assert "`raycai serve delete demo`" in deployed.stderr


def test_what_raycai_sends_passes_rays_own_schema(tmp_path: Path) -> None:
    """The rewritten, listen-set, merged config is valid for Ray 2.60's ServeDeploySchema
    (the check behind the PUT's 400), and the user's plain path would not have been."""
    schema = pytest.importorskip("ray.serve.schema").ServeDeploySchema
    (tmp_path / "code").mkdir()
    user = {
        "http_options": {"host": "0.0.0.0", "port": 9000},
        "applications": [app("a", "/a", runtime_env={"working_dir": "code"})],
    }
    with pytest.raises(ValueError, match="Expected URI but received path"):
        schema.model_validate(user)
    config, _ = rewrite_paths(user, tmp_path, tmp_path)
    config, _ = apply_listen(config, 8123)
    config = merge({"applications": [app("b", "/b")]}, config)
    parsed = schema.model_validate(config)
    assert parsed.proxy_location == "HeadOnly" and parsed.http_options.port == 8123
    assert [a.name for a in parsed.applications] == ["b", "a"]


async def test_a_deploy_waits_for_ray_longer_than_other_calls(dash: FakeDashboard) -> None:
    """Ray answers a Serve PUT once the controller took it, which the first deploy (Serve
    starting) makes slow: it must not be cut off by the timeout of ordinary calls."""
    from raycai_core.ray.client import RayClient
    from raycai_core.ray.errors import RayDashboardUnreachable

    dash.delay_s = 1.0
    config = {"applications": [{"name": "a", "route_prefix": "/a", "import_path": "m:app"}]}
    async with RayClient(dash.url, token=TOKEN, timeout=0.3) as client:
        with pytest.raises(RayDashboardUnreachable):
            await client.serve_status()
        await client.deploy_serve(config)
    assert dash.serve_configs[-1] == config
