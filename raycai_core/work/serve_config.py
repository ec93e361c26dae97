"""Ray Serve config files (the format `serve build` writes and `serve deploy` takes): load,
rewrite for the cluster, merge by application name, and the cluster's stored copy.

A `PUT /api/serve/applications/` replaces every application, so raycai keeps the config it
last sent and Ray accepted in the cluster directory (`serve.json`, the cluster's desired
Serve state) and always sends the whole merged config. Pure but for reading the file, the
existence checks of rewritten paths and the stored copy's read and write.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raycai_core.atomic import atomic_write_json, read_json
from raycai_core.cluster.layout import ClusterPaths

DEFAULT_APP_NAME = "default"  # Serve's name for an application without one
LOOPBACK = "127.0.0.1"
POD_NETWORK = "0.0.0.0"
PROXY_LOCATION = "HeadOnly"
_URI_FIELDS = ("working_dir", "py_modules")

Config = dict[str, Any]


class ServeConfigError(ValueError):
    """The file is not a Serve config raycai can send; the message says why."""


# -- loading -------------------------------------------------------------------------------------


def parse_serve_config(text: str, source: str = "the config") -> Config:
    """The config as a dict: YAML (JSON is YAML too) with an `applications` list whose
    entries are mappings with an `import_path`; Ray checks the rest and says what is wrong."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ServeConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ServeConfigError(f"{source} is not a Serve config (a YAML mapping)")
    apps = data.get("applications")
    if not isinstance(apps, list) or not apps:
        hint = " (a single-application file: put it under `applications:`)"
        raise ServeConfigError(
            f"{source} has no `applications` list, as `serve build` writes"
            + (hint if "import_path" in data else "")
        )
    seen: set[str] = set()
    for index, app in enumerate(apps):
        where = f"{source}: applications[{index}]"
        if not isinstance(app, dict):
            raise ServeConfigError(f"{where} is not a mapping")
        if not isinstance(app.get("import_path"), str) or not app["import_path"].strip():
            raise ServeConfigError(f"{where} has no import_path (module:attribute)")
        name = app_name(app)
        if name in seen:
            raise ServeConfigError(f"{source}: two applications are named {name!r}")
        seen.add(name)
    return data


def load_serve_config(path: Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ServeConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ServeConfigError(f"{path} is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeConfigError(f"cannot read {path}: {exc}") from None
    return parse_serve_config(text, str(path))


def app_name(app: dict[str, Any]) -> str:
    return str(app.get("name") or DEFAULT_APP_NAME)


def app_names(config: Config) -> list[str]:
    return [app_name(app) for app in config.get("applications") or []]


# -- rewriting for the cluster ---------------------------------------------------------------------


def _runtime_envs(config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, runtime_env) of each application and of each deployment's actor options."""
    for app in config.get("applications") or []:
        name = app_name(app)
        if isinstance(app.get("runtime_env"), dict):
            yield f"application {name!r}", app["runtime_env"]
        for deployment in app.get("deployments") or []:
            options = deployment.get("ray_actor_options") if isinstance(deployment, dict) else None
            if isinstance(options, dict) and isinstance(options.get("runtime_env"), dict):
                label = f"deployment {name}/{deployment.get('name', '?')}"
                yield label, options["runtime_env"]


def _is_uri(value: str) -> bool:
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.isalnum()


def local_uri(value: str, base_dir: Path, project_dir: Path, where: str) -> str:
    """A plain path -> `local:///<absolute path>`, the URI Ray 2.60 accepts for a directory
    that already exists on every node. Only the project directory is the same path on every
    node, so the directory must exist and be inside it. A URI is left as it is."""
    if _is_uri(value):
        return value
    path = Path(value).expanduser()
    resolved = (path if path.is_absolute() else base_dir / path).resolve()
    project = project_dir.resolve()
    if not resolved.exists():
        raise ServeConfigError(f"{where}: {value!r} ({resolved}) does not exist")
    if not resolved.is_dir():
        raise ServeConfigError(
            f"{where}: {value!r} ({resolved}) is not a directory (Ray uses a directory in place)"
        )
    if resolved != project and project not in resolved.parents:
        raise ServeConfigError(
            f"{where}: {value!r} ({resolved}) is outside the project directory {project}, "
            "the only directory that is the same on every node"
        )
    return f"local://{resolved}"


def rewrite_paths(config: Config, base_dir: Path, project_dir: Path) -> tuple[Config, list[str]]:
    """A copy whose `working_dir` and `py_modules` paths are `local://` URIs (relative paths
    are relative to `base_dir`, the config file's directory); one line per rewrite."""
    config = copy.deepcopy(config)
    notes: list[str] = []
    for where, env in _runtime_envs(config):
        for field in _URI_FIELDS:
            value = env.get(field)
            if isinstance(value, str):
                new = local_uri(value, base_dir, project_dir, f"{where} {field}")
                env[field] = new
                if new != value:
                    notes.append(f"{where}: {field} {value} -> {new}")
            elif isinstance(value, list):
                rewritten = [
                    local_uri(v, base_dir, project_dir, f"{where} {field}")
                    if isinstance(v, str)
                    else v
                    for v in value
                ]
                notes += [
                    f"{where}: {field} {old} -> {new}"
                    for old, new in zip(value, rewritten, strict=True)
                    if old != new
                ]
                env[field] = rewritten
    return config, notes


def apply_listen(config: Config, port: int, host: str = LOOPBACK) -> tuple[Config, list[str]]:
    """A copy with raycai's proxy location, host and port; one line per value of the file's
    that was overwritten (`http_options` only take effect when Serve starts, so they are
    never the user's to choose on a shared cluster)."""
    config = copy.deepcopy(config)
    notes: list[str] = []
    wanted = {"proxy_location": PROXY_LOCATION}
    for key, value in wanted.items():
        if key in config and config[key] != value:
            notes.append(f"{key}: {config[key]!r} overwritten with {value!r} (raycai's choice)")
        config[key] = value
    options = config.get("http_options")
    if not isinstance(options, dict):
        options = {}
    for key, value in (("host", host), ("port", port)):
        if key in options and options[key] != value:
            notes.append(
                f"http_options.{key}: {options[key]!r} overwritten with {value!r} (raycai's choice)"
            )
        options[key] = value
    config["http_options"] = options
    return config, notes


# -- merging -------------------------------------------------------------------------------------


def merge(stored: Config | None, incoming: Config) -> Config:
    """`stored` with `incoming`'s applications replacing those of the same name (in place)
    and the new ones appended; `incoming`'s other top-level settings win."""
    base = copy.deepcopy(stored) if stored else {}
    merged = {**base, **copy.deepcopy({k: v for k, v in incoming.items() if k != "applications"})}
    new = {app_name(app): copy.deepcopy(app) for app in incoming.get("applications") or []}
    apps = []
    for app in base.get("applications") or []:
        apps.append(new.pop(app_name(app), app))
    apps += new.values()
    merged["applications"] = apps
    return merged


def without_app(stored: Config, name: str) -> Config:
    """`stored` without application `name`; ServeConfigError when it has none of that name."""
    if name not in app_names(stored):
        known = ", ".join(app_names(stored)) or "none"
        raise ServeConfigError(
            f"application {name!r} is not in the cluster's stored Serve config (raycai "
            f"deployed: {known}); one deployed another way (a driver's serve.run) goes only "
            "with all of Serve"
        )
    config = copy.deepcopy(stored)
    config["applications"] = [a for a in config["applications"] if app_name(a) != name]
    return config


# -- the stored copy -----------------------------------------------------------------------------


def read_stored(paths: ClusterPaths) -> Config | None:
    data = read_json(paths.serve_json)
    return data if isinstance(data, dict) else None


def write_stored(paths: ClusterPaths, config: Config) -> None:
    """Only after Ray accepted `config`: it is then what the cluster runs."""
    atomic_write_json(paths.serve_json, config)


def remove_stored(paths: ClusterPaths) -> None:
    paths.serve_json.unlink(missing_ok=True)
