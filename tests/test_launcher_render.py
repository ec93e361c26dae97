"""Rendering launchers, launcher.json and the token: pure file work, no processes."""

from __future__ import annotations

import ast
import json
import stat
import sys
from importlib import resources
from pathlib import Path

import pytest

from raycai_core.credentials import Secret
from raycai_core.launcher import render
from raycai_core.launcher.render import (
    fill_constants,
    launcher_config,
    read_token,
    render_cluster,
    render_script,
    template_source,
)
from raycai_core.spec import GIB, parse_spec

CONSTANTS = ("ROLE", "CLUSTER_DIR")
HOSTILE = [
    "",
    "'",
    '"',
    '"""',
    "'''",
    "\\",
    "\\'",
    "a\nb",
    "x'\nimport os; os.system('id')\n'",
    '"; __import__("os").system("id"); "',
    "__import__('os')",
    "\r\n\x00\x1b[31m",
    "\u2028\u2029\x85",
    "héllo ✓ 日本 🚀",
    "\ud800",
    "{ROLE}",
    "# raycai:constants-end\nROLE = 'head'",
    "x" * 5000,
]


def spec(**overrides):
    data = {"name": "demo", "head": {"runtime_identifier": "img", "cpu": 2, "memory": 4}}
    data.update(overrides)
    return parse_spec(data)


def _neutralised(source: str) -> tuple[str, dict[str, object]]:
    """The AST dump with the constants' values blanked, and those values."""
    tree = ast.parse(source)
    values: dict[str, object] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in CONSTANTS
        ):
            values[node.targets[0].id] = ast.literal_eval(node.value)
            node.value = ast.Constant(value=None)
    return ast.dump(tree), values


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_no_constant_value_changes_the_code(value: str) -> None:
    template = template_source()
    reference, _ = _neutralised(template)
    rendered = fill_constants(template, {"ROLE": value, "CLUSTER_DIR": value})
    dump, values = _neutralised(rendered)
    assert dump == reference
    assert values == {"ROLE": value, "CLUSTER_DIR": value}
    # Same number of lines: tracebacks point at the template's lines.
    assert rendered.count("\n") == template.count("\n")


def test_scripts_compile_on_python_38_grammar() -> None:
    for role in ("head", "worker"):
        source = render_script(role, ".raycai/clusters/demo")
        ast.parse(source, feature_version=(3, 8))
        compile(source, f"{role}.py", "exec")
    proxy = resources.files("raycai_core.launcher").joinpath("head_proxy.py").read_text()
    ast.parse(proxy, feature_version=(3, 8))


def test_render_script_sets_constants_and_checks_inputs() -> None:
    _, values = _neutralised(render_script("worker", ".raycai/clusters/a'b\"c"))
    assert values == {"ROLE": "worker", "CLUSTER_DIR": ".raycai/clusters/a'b\"c"}
    for role, directory in (
        ("boss", ".raycai/clusters/x"),
        ("head", "/etc"),
        ("head", ".raycai/../x"),
        ("head", "a\nb"),
    ):
        with pytest.raises(ValueError):
            render_script(role, directory)


def test_launcher_json_contents() -> None:
    config = launcher_config(
        spec(
            workers={"count": 3, "cpu": 4, "memory": 10, "nvidia_gpu": 1},
            ray={"version": "2.60.0", "search": [".venv", "PATH"], "gcs_port": 6380},
            env={"FOO": "bar"},
        )
    )
    worker = {
        "num_cpus": 4,
        "num_gpus": 1,
        "memory": 10 * GIB - int(10 * GIB * 0.3),
        "object_store_memory": int(10 * GIB * 0.3),
    }
    assert config == {
        "schema": 1,
        "cluster": "demo",
        "ray": {
            "version": "2.60.0",
            "search": [".venv", "PATH"],
            "gcs_port": 6380,
            "client_port": 10001,
        },
        "auth": {"mode": "token", "token_file": "auth_token"},
        "head": {
            "num_cpus": 2,
            "num_gpus": 0,
            "memory": 4 * GIB - int(4 * GIB * 0.3),
            "object_store_memory": int(4 * GIB * 0.3),
        },
        "worker": worker,
        # The same sizes per group (a one-[workers] cluster has the group `worker`).
        "groups": {"worker": {**worker, "resources": {}, "labels": {}}},
        "env": {"FOO": "bar"},
        # Where Serve listens, and the head proxy on the head application's port.
        "serve": {"listen": "loopback"},
        "proxy": {"program": "raycai_head_proxy.py", "prefix": "/serve", "log": "proxy.log"},
        # Each node's Ray logs copied into logs/<node>/ray/ (200 MB for the whole cluster).
        "ray_logs": {"program": "raycai_ray_logs.py", "cap_bytes": 200 * 2**20, "interval_s": 3.0},
    }
    # The worker count is lifecycle's business: scaling does not touch launcher.json.
    assert launcher_config(spec(workers={"count": 9})) == launcher_config(
        spec(workers={"count": 1})
    )


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_render_writes_files_token_and_is_idempotent(tmp_path: Path) -> None:
    result = render_cluster(tmp_path, spec())
    paths = result.paths
    assert set(result.changed) == {
        "auth_token",
        "launcher.json",
        "head.py",
        "worker.py",
        "raycai_head_proxy.py",
        "raycai_ray_logs.py",
    }
    token = read_token(paths)
    assert isinstance(token, Secret) and len(token.reveal()) == 64
    assert stat.S_IMODE(paths.auth_token.stat().st_mode) == 0o600
    for name in ("launcher.json", "head.py", "worker.py", "raycai_head_proxy.py"):
        assert stat.S_IMODE((paths.root / name).stat().st_mode) == 0o644
    assert json.loads(paths.launcher_json.read_text()) == result.launcher
    assert paths.nodes_dir.is_dir() and paths.logs_dir.is_dir()

    before = {p: p.read_bytes() for p in _all_files(tmp_path)}
    again = render_cluster(tmp_path, spec())
    assert again.changed == ()
    assert {p: p.read_bytes() for p in _all_files(tmp_path)} == before
    assert read_token(paths) == token

    secret = token.reveal()
    for path in _all_files(tmp_path):
        if path != paths.auth_token:
            assert secret not in path.read_text(encoding="utf-8")
    assert not [p for p in paths.root.iterdir() if p.name.endswith(".tmp")]


def test_rerender_after_a_spec_change_keeps_the_token(tmp_path: Path) -> None:
    first = render_cluster(tmp_path, spec())
    token = read_token(first.paths)
    second = render_cluster(tmp_path, spec(workers={"cpu": 8}, env={"A": "1"}))
    assert second.changed == ("launcher.json",)
    assert json.loads(first.paths.launcher_json.read_text())["worker"]["num_cpus"] == 8
    assert read_token(first.paths) == token


def test_given_token_and_loose_mode(tmp_path: Path) -> None:
    paths = render_cluster(tmp_path, spec(), token=Secret("s3cret")).paths
    assert read_token(paths) == Secret("s3cret")
    paths.auth_token.chmod(0o644)
    assert "auth_token" not in render_cluster(tmp_path, spec()).changed
    assert stat.S_IMODE(paths.auth_token.stat().st_mode) == 0o600
    assert read_token(paths) == Secret("s3cret")


def test_token_file_never_exists_with_wider_mode(tmp_path: Path, monkeypatch) -> None:
    seen: list[int] = []
    real_write = render.atomic_write_bytes

    def spy(path, data, *, mode=0o644):
        seen.append(mode)
        return real_write(path, data, mode=mode)

    monkeypatch.setattr(render, "atomic_write_bytes", spy)
    render_cluster(tmp_path, spec())
    assert seen[0] == 0o600  # the token is written first, 0600 from creation (atomic.py)


def test_template_is_importable_stdlib_only() -> None:
    tree = ast.parse(template_source())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert "__file__" not in template_source()


def test_launchers_speak_the_core_vocabulary() -> None:
    """The template's literal vocabulary is what render writes from phases.py, and every
    phase the launcher records is one the core knows."""
    from raycai_core.cluster import phases
    from raycai_core.launcher.render import fill_vocabulary

    template = template_source()
    assert fill_vocabulary(template) == template
    rendered = render_script("worker", ".raycai/clusters/demo")
    namespace: dict[str, object] = {}
    block = rendered.split("# raycai:vocabulary-begin\n", 1)[1].split("# raycai:vocabulary-end")[0]
    exec(block, namespace)  # constants only: the block equals the rendered one (above)
    assert {k: v for k, v in namespace.items() if k.isupper()} == phases.LAUNCHER_CONSTANTS
    assert namespace["HEARTBEAT_S"] == phases.HEARTBEAT_S
    recorded = set()
    for node in ast.walk(ast.parse(template)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "phase"
            and node.args
        ):
            first = node.args[0]
            if isinstance(first, ast.Constant):
                recorded.add(first.value)
            elif isinstance(first, ast.Name):
                recorded.add(namespace[first.id])
    assert recorded and recorded <= set(phases.PHASES)
    assert {phases.JOINED, phases.DRAINING, phases.DRAINED, phases.STOPPED} <= recorded


def test_heads_ray_runs_without_grpcs_fork_handlers_unless_the_user_says(monkeypatch) -> None:
    # Ray Client's proxy forks a server per driver; gRPC's fork handlers crash it now and then
    # (ray-project/ray#63202). Only the head runs that proxy; a user's own value wins.
    from raycai_core.launcher import template

    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    monkeypatch.setattr(template, "ROLE", "head")
    assert template.ray_environment({}, {})["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    spec_env = {"env": {"GRPC_ENABLE_FORK_SUPPORT": "true"}}
    assert template.ray_environment(spec_env, {})["GRPC_ENABLE_FORK_SUPPORT"] == "true"
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "1")
    assert template.ray_environment({}, {})["GRPC_ENABLE_FORK_SUPPORT"] == "1"
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT")
    monkeypatch.setattr(template, "ROLE", "worker")
    assert "GRPC_ENABLE_FORK_SUPPORT" not in template.ray_environment({}, {})
