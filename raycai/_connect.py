"""`raycai.connect(name)`: Ray Client to a raycai cluster with its token, versions checked."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ray Client's proxy starts one server process per driver; on a loaded machine that process
# sometimes dies at its start (ray-project/ray#63202, open: a gRPC poller race at fork) and
# the proxy reports it to the driver, in one of two ways: "Starting Ray client server failed"
# (seen in CI about once in ten runs, on 2 busy cores), or, when it died while the proxy was
# reading its command line, psutil's ZombieProcess raised in start_specific_server (seen
# once). A new connect gets a new server: the retry after the first shape has worked in
# CI; the second is retried the same way. raycai's head launcher now turns off gRPC's fork
# handlers, where the child crashed (GRPC_ENABLE_FORK_SUPPORT=false: of 144 drivers started
# four at a time on a fresh head, 5 failed without it and none with it); the retry stays for
# heads started otherwise.
SERVER_START_FAILED = "Starting Ray client server failed"
SERVER_DIED_AT_START = ("Initialization failure from server", "start_specific_server")
SERVER_START_ATTEMPTS = 3
SERVER_START_BACKOFF_S = 2.0


class ConnectError(RuntimeError):
    """The driver could not connect; the message says why and what to do."""


class VersionMismatch(ConnectError):
    """This Python or Ray differs from the cluster's (Ray Client requires the same)."""


def driver_environment(name: str, *, project_dir: str | os.PathLike[str] | None = None) -> dict:
    """The variables `raycai env NAME` prints (the token's path, never the token)."""
    return _access(name, project_dir).environment()


def _access(name: str, project_dir: str | os.PathLike[str] | None) -> Any:
    from raycai_core.target import resolve_target
    from raycai_core.work.access import ClusterAccessError, load_access

    try:
        target = resolve_target(project_dir=project_dir, remote=False)
        return load_access(target.project_dir, name)
    except ClusterAccessError as exc:
        raise ConnectError(str(exc)) from None
    except Exception as exc:  # no workspace or project: the message says what to set
        raise ConnectError(f"cannot find the project of cluster {name!r}: {exc}") from None


def _wake(name: str, project_dir: str | os.PathLike[str] | None) -> None:
    """A suspended cluster is resumed (said on stderr) and waited for until ready."""
    from raycai_core.cli.suspend_cmd import is_suspended
    from raycai_core.target import resolve_target

    try:
        target = resolve_target(project_dir=project_dir, remote=False)
    except Exception:
        return  # _access says what is missing
    if not is_suspended(target, name):
        return
    from raycai_core.aio import run_async
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cluster.suspend import wake_if_suspended
    from raycai_core.cml.client import CMLClient

    async def wake() -> None:
        async with CMLClient(target.credentials) as cml:
            ops = ClusterManager(cml, target.project_dir)
            try:
                await wake_if_suspended(ops, name, lambda line: print(line, file=sys.stderr))
            finally:
                await ops.observer.aclose()

    try:
        run_async(wake())
    except Exception as exc:
        raise ConnectError(f"cluster {name!r} is suspended and did not resume: {exc}") from None


def _use_token_auth(token_path: Path) -> None:
    """Make this process's Ray send the cluster's token.

    Ray reads RAY_AUTH_MODE once, when its core library loads: a process that imported ray
    before `connect` also needs Ray's own config switched (a private API of Ray 2.60).
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # Ray would prefer it to the cluster's file
    if "ray._raylet" not in sys.modules:
        return
    import ray._raylet as raylet

    if raylet.get_authentication_mode() != raylet.AuthenticationMode.TOKEN:
        raylet.Config.initialize(json.dumps({"AUTH_MODE": "token"}))
    raylet.AuthenticationTokenLoader.instance().reset_cache()


def connect(
    name: str,
    *,
    project_dir: str | os.PathLike[str] | None = None,
    check_versions: bool = True,
    **ray_init_kwargs: Any,
) -> Any:
    """Connect this process to cluster NAME with Ray Client; returns `ray.init`'s context.

    The cluster is found in the project's files (as the `raycai` CLI finds it); the token is
    read by Ray from its file. Raises `VersionMismatch` when this Python (major.minor) or Ray
    differs from the cluster's, `ConnectError` when the cluster is not reachable or refused.
    """
    from raycai_core.work.access import local_versions, version_problems

    _wake(name, project_dir)
    access = _access(name, project_dir)
    if check_versions:
        problems = version_problems(access, *local_versions())
        if problems:
            raise VersionMismatch("; ".join(problems))
    _use_token_auth(access.token_path)
    import ray

    if ray.is_initialized():
        raise ConnectError(
            "this process is already connected to Ray: call ray.shutdown() first, then "
            f"raycai.connect({name!r})"
        )
    try:
        return init_with_retry(lambda: ray.init(access.client_address, **ray_init_kwargs))
    except ConnectionError as exc:
        raise ConnectError(
            f"Ray Client at {access.client_address} (cluster {name!r}) did not accept this "
            f"driver ({exc}): either the head is not reachable from here, or it refused the "
            f"driver's token. The token must be {access.token_path} with RAY_AUTH_MODE=token "
            f'set before Ray is loaded: start the driver with `eval "$(raycai env {name})"` '
            f"or `raycai run {name} -- python ...`, or restart this Python and call "
            f"raycai.connect({name!r}) first. Is the cluster up? (`raycai status {name}`)"
        ) from exc


def server_failed_to_start(message: str) -> bool:
    """Whether Ray Client's error says the head's server for this driver died at its start."""
    return SERVER_START_FAILED in message or all(part in message for part in SERVER_DIED_AT_START)


def init_with_retry(
    init: Callable[[], Any],
    *,
    attempts: int = SERVER_START_ATTEMPTS,
    backoff_s: float = SERVER_START_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Call `init`, again (after a pause) when the head's per-driver server failed to start.

    Any other error (refused token, unreachable head) is raised at once: trying again would
    only delay the message that says what to fix. A failed Ray Client connect disconnects
    itself, so the next attempt starts clean.
    """
    for attempt in range(1, attempts + 1):
        try:
            return init()
        except ConnectionError as exc:
            if not server_failed_to_start(str(exc)) or attempt == attempts:
                raise
            print(
                f"raycai: the head's Ray Client server for this driver failed to start "
                f"(attempt {attempt} of {attempts}); trying again in {backoff_s:.0f} s",
                file=sys.stderr,
            )
            sleep(backoff_s * attempt)
    raise AssertionError("unreachable")
