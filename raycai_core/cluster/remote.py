"""Clusters from outside CML (a laptop, a CI runner): the project's files through the API.

Design: a local staging directory mirrors the part of the project that a command needs.
Before it reads, the command pulls the cluster's files (list + download); the lifecycle
then renders and decides exactly as on disk, and every file it writes is pushed back with
delete-upload-verify (`ProjectFiles.replace`, which never leaves a `name(1)` copy). Records
and logs are read by download. Ray cannot be asked from outside the project, so readiness is
every launcher record joined (`ClusterView.all_joined`, the launchers' word).

No file lock reaches the project from here: the desired state (cluster.json) is re-read just
before it is written, and the command refuses when it changed since this command read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

from raycai_core.atomic import atomic_write_bytes
from raycai_core.cluster import phases
from raycai_core.cluster.apps import APP_FILTER, ClusterApp, group_by_cluster
from raycai_core.cluster.desired import DesiredState
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cluster.lifecycle import (
    ClusterManager,
    _check_deadline,
    _head_wait_reason,
    summarise,
)
from raycai_core.cluster.observe import ClusterFiles, Observer
from raycai_core.cluster.readiness import progress_line
from raycai_core.cluster.records import HeadAddress, read_head_address, read_node_record
from raycai_core.cluster.types import ClusterError, ClusterSummary, NodeFailed, ProgressCallback
from raycai_core.cluster.view import ClusterView
from raycai_core.cml.client import CMLClient
from raycai_core.cml.files import ProjectFiles
from raycai_core.launcher.autoscaling import autoscaler_files
from raycai_core.launcher.render import head_programs
from raycai_core.naming import HEAD_NODE
from raycai_core.ray.client import RayClient
from raycai_core.ray.errors import RayDashboardError
from raycai_core.spec import ClusterSpec

NO_RAY_FROM_OUTSIDE = (
    "Ray cannot be asked from outside the project: readiness is every launcher's record"
)
# Files the launchers write (never pushed back): records, logs, drains' ends, the head's.
_NOT_OURS = ("nodes", "logs", "drain")
_PARALLEL = 4


class DesiredStateChanged(ClusterError):
    """cluster.json changed in the project since this command read it (another raycai)."""


class RemoteProject:
    """The project's cluster files through the API, mirrored in a local staging dir."""

    def __init__(self, files: ProjectFiles, staging: Path) -> None:
        self.files = files
        self.staging = Path(staging)
        self._seen: dict[str, bytes | None] = {}  # cluster.json as this command read it
        self._slots = asyncio.Semaphore(_PARALLEL)

    def paths(self, name: str) -> ClusterPaths:
        return ClusterPaths(self.staging, name)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.staging).as_posix()

    async def _download(self, path: Path) -> bool:
        """The project's copy of `path` into the staging dir (absent there: removed here)."""
        async with self._slots:
            data = await self.files.read(self._relative(path))
        if data is None:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            return False
        await asyncio.to_thread(atomic_write_bytes, path, data, mode=0o600)
        return True

    async def _download_log(self, path: Path) -> bool:
        """A launcher log, appended in place to the staging copy when it only grew, so that
        a follow of the copy (same inode, same offset) reads just the new lines."""
        async with self._slots:
            data = await self.files.read(self._relative(path))
        if data is None:
            return False
        await asyncio.to_thread(_grow_in_place, path, data)
        return True

    async def _pull_dir(self, directory: Path, suffix: str, *, logs: bool = False) -> None:
        """Every `*<suffix>` file of one directory (a node a launcher removed goes here too)."""
        listed = {e.name for e in await self.files.list(self._relative(directory)) if not e.is_dir}
        wanted = {n for n in listed if n.endswith(suffix) and not n.startswith(".")}
        await asyncio.to_thread(_remove_unlisted, directory, suffix, wanted)
        fetch = self._download_log if logs else self._download
        await asyncio.gather(*(fetch(directory / n) for n in sorted(wanted)))

    async def pull_logs(self, name: str) -> None:
        """The launcher logs alone (a follow's refresh)."""
        await self._pull_dir(self.paths(name).logs_dir, ".log", logs=True)

    async def pull_ray_log_copy(self, name: str, node: str, filename: str) -> bool:
        """The newest session's copy of one of `node`'s Ray logs (logs/<node>/ray/<session>/,
        what its launcher keeps) and the node's record; False when the project has none."""
        paths = self.paths(name)
        root = paths.logs_dir / node / "ray"
        await self._download(paths.node_record(node))
        sessions = [e for e in await self.files.list(self._relative(root)) if e.is_dir]
        for session in sorted((e.name for e in sessions), reverse=True):
            folder = root / session
            names = {e.name for e in await self.files.list(self._relative(folder))}
            if filename in names:
                await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
                return await self._download(folder / filename)
        return False

    async def pull(self, name: str, *, logs: bool = False, token: bool = True) -> None:
        """cluster.json (remembered for the conflict check), the token (kept by a render:
        `token=False` for a reader), head.json and the node records; the launcher logs too
        when asked."""
        paths = self.paths(name)
        desired = self.files.read(self._relative(paths.cluster_json))
        seen, *_ = await asyncio.gather(
            desired,
            *([self._download(paths.auth_token)] if token else []),
            self._download(paths.head_json),
            self._pull_dir(paths.nodes_dir, ".json"),
            *([self.pull_logs(name)] if logs else []),
        )
        self._seen[name] = seen
        if seen is None:
            await asyncio.to_thread(paths.cluster_json.unlink, missing_ok=True)
        else:
            await asyncio.to_thread(atomic_write_bytes, paths.cluster_json, seen)

    async def check_unchanged(self, name: str) -> None:
        """Refuse (DesiredStateChanged) when cluster.json is no longer what `pull` read."""
        if name not in self._seen:
            raise ClusterError(f"internal: cluster {name}'s files were not read before writing")
        now = await self.files.read(self._relative(self.paths(name).cluster_json))
        if now != self._seen[name]:
            raise DesiredStateChanged(
                f"cluster {name}'s desired state (cluster.json) changed in the project since "
                "this command read it: another raycai (a session, a job or another laptop) "
                "changed the cluster meanwhile. Nothing was written; run the command again "
                "to act on the new state"
            )

    async def push(self, name: str, *, rendered: bool = True) -> list[str]:
        """cluster.json first (just after the conflict check), then (`rendered`: the
        launchers were rendered) every other file raycai rendered, and the rendered files it
        no longer has are deleted. The files replaced."""
        paths = self.paths(name)
        await self.check_unchanged(name)
        data = await asyncio.to_thread(paths.cluster_json.read_bytes)
        replaced = (
            []
            if not await self.files.replace(self._relative(paths.cluster_json), data)
            else [paths.cluster_json.name]
        )
        self._seen[name] = data
        if not rendered:  # `down` marking the cluster deleting: nothing else changes yet
            return replaced
        files = await asyncio.to_thread(_rendered_files, self.staging, paths)

        async def one(path: Path) -> None:
            content = await asyncio.to_thread(path.read_bytes)
            async with self._slots:
                if await self.files.replace(self._relative(path), content):
                    replaced.append(self._relative(path))

        await asyncio.gather(*(one(path) for path in files))
        gone = [p for p in autoscaler_files(paths) if not p.exists()]
        listed = {e.name for e in await self.files.list(self._relative(paths.root))}
        for path in gone:
            if path.name in listed:
                await self.files.delete(self._relative(path))
        return replaced

    async def forget_head(self, name: str) -> None:
        paths = self.paths(name)
        await self.files.delete(self._relative(paths.head_json))
        await asyncio.to_thread(paths.head_json.unlink, missing_ok=True)

    async def remove_cluster_files(self, name: str) -> None:
        """What `down` removes (its logs stay), in the project."""
        paths = self.paths(name)
        files = [
            paths.head_json,
            paths.launcher_json,
            paths.auth_token,
            paths.script("head"),
            paths.script("worker"),
            *autoscaler_files(paths),
            *head_programs(paths),
            paths.nodes_dir,
            paths.drain_dir,
            paths.cluster_json,  # last: while it says `deleting`, nothing recreates the cluster
        ]
        listed = {e.name for e in await self.files.list(self._relative(paths.root))}
        for path in files:
            if path.name in listed:
                await self.files.delete(self._relative(path))
        self._seen.pop(name, None)


def _grow_in_place(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "rb") as handle:
            have = handle.read()
    except FileNotFoundError:
        have = b""
    if have and data.startswith(have):
        if len(data) > len(have):
            with open(path, "ab") as handle:
                handle.write(data[len(have) :])
        return
    with open(path, "wb") as handle:  # new, or rewritten in the project: a truncation
        handle.write(data)


def _remove_unlisted(directory: Path, suffix: str, wanted: set[str]) -> None:
    if directory.is_dir():
        for stale in directory.glob(f"*{suffix}"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)


def _rendered_files(staging: Path, paths: ClusterPaths) -> list[Path]:
    """Every file the render left in the staging dir, those of the launchers' excepted."""
    skip = {paths.cluster_json, paths.head_json}
    found = []
    for path in sorted(staging.rglob("*")):
        if not path.is_file() or path in skip:
            continue
        if paths.root in path.parents and path.relative_to(paths.root).parts[0] in _NOT_OURS:
            continue
        if path.name in (".lock", ".jobs.lock"):
            continue
        found.append(path)
    return found


class RemoteObserver(Observer):
    """Views from the project's files through the API and the application list; no Ray."""

    def __init__(self, cml: CMLClient, project: RemoteProject) -> None:
        super().__init__(cml, project.staging)
        self.project = project

    async def observe(
        self,
        name: str,
        members: list[ClusterApp] | None = None,
        *,
        with_ray: bool = True,
        files: ClusterFiles | None = None,
        reuse_usage: bool = False,
    ) -> ClusterView:
        if files is None:
            await self.project.pull(name, token=False)
        view = await super().observe(name, members, with_ray=False, files=files)
        return dataclasses.replace(view, remote=True)

    async def dashboard(self, name: str, head: HeadAddress) -> RayClient:
        raise RayDashboardError(NO_RAY_FROM_OUTSIDE)

    async def ray_nodes(
        self, name: str, head: HeadAddress | None, *, reuse_usage: bool = False
    ) -> tuple[list, str | None]:
        return [], NO_RAY_FROM_OUTSIDE


class RemoteClusterManager(ClusterManager):
    """`up`, `status`, `down` through the files API (see the module's docstring)."""

    def __init__(
        self,
        cml: CMLClient,
        staging: Path,
        *,
        progress: ProgressCallback | None = None,
        file_poll_s: float = 1.0,
        api_poll_s: float = 2.0,
    ) -> None:
        self.project = RemoteProject(ProjectFiles(cml), staging)
        super().__init__(
            cml,
            staging,
            progress=progress,
            observer=RemoteObserver(cml, self.project),
            file_poll_s=file_poll_s,
            api_poll_s=api_poll_s,
        )

    def lock(self, name: str, *, wait: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        # No lock reaches the project's files from outside; `_store` refuses on a change.
        return contextlib.nullcontext()

    async def _store(self, spec: ClusterSpec, state: DesiredState = "active") -> None:
        await self.project.check_unchanged(spec.name)
        await super()._store(spec, state)
        replaced = await self.project.push(spec.name, rendered=state == "active")
        if replaced:
            self.report("upload", f"uploaded {', '.join(sorted(replaced))}")

    async def _forget_head(self, paths: ClusterPaths) -> None:
        await self.project.forget_head(paths.cluster)

    async def _remove_files(self, paths: ClusterPaths) -> None:
        await self.project.remove_cluster_files(paths.cluster)
        await super()._remove_files(paths)

    async def up(
        self, spec: ClusterSpec, *, wait: bool = True, timeout: float | None = 900.0
    ) -> ClusterView:
        self.report("files", "reading the cluster's files through the API (no session here)")
        await self.project.pull(spec.name)
        return await super().up(spec, wait=wait, timeout=timeout)

    async def down(self, name: str, *, timeout: float = 300.0) -> list[str]:
        await self.project.pull(name, token=False)
        return await super().down(name, timeout=timeout)

    async def list_clusters(self) -> list[ClusterSummary]:
        """Every cluster of the project: the app list, and each cluster's files pulled."""
        grouped = group_by_cluster(await self.cml.list_applications(APP_FILTER))
        clusters_dir = self.paths("x").relative.parent.as_posix()
        listed = await self.project.files.list(clusters_dir)
        names = sorted({e.name for e in listed if e.is_dir} | set(grouped))
        await asyncio.gather(*(self.project.pull(name, token=False) for name in names))
        return await asyncio.to_thread(summarise, self.project_dir, grouped)

    async def _wait_head(
        self, spec: ClusterSpec, head: ClusterApp, deadline: float | None
    ) -> HeadAddress:
        """head.json and the head's record saying running (its GCS is not reachable here)."""
        paths = self.paths(spec.name)
        self.report("head-wait", "waiting for the head to publish its address")
        last_reason = ""
        while True:
            await self.project.pull(spec.name, token=False)
            address = await asyncio.to_thread(read_head_address, paths)
            record = await asyncio.to_thread(read_node_record, paths, HEAD_NODE)
            if record is not None and record.phase == phases.FAILED:
                raise NodeFailed(
                    f"the head failed: {record.error or 'see its log'} "
                    f"(`raycai logs {spec.name} head`)"
                )
            if (
                address is not None
                and record is not None
                and record.phase in phases.READY_PHASES
                and not phases.is_stale(record, time.time())
            ):
                return address
            app = await self.cml.get_application(head.app.id)
            reason = _head_wait_reason(app.status, record.phase if record else None)
            if reason != last_reason:
                self.report("head-wait", reason)
                last_reason = reason
            _check_deadline(deadline, f"the head did not publish its address ({last_reason})")
            await asyncio.sleep(self.file_poll_s)

    async def wait_ready(
        self, name: str, *, deadline: float | None = None, timeout: float | None = None
    ) -> ClusterView:
        """Every node's launcher record joined (Ray is not reachable from outside)."""
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        last = ""
        while True:
            view = await self.observer.observe(name)
            line = progress_line(view)
            if line != last:
                self.report("joined", line, view.nodes_joined, view.nodes_wanted)
                last = line
            if view.ready:  # remote: every launcher's record joined
                return view
            row = view.failed_row
            if row is not None:
                raise NodeFailed(
                    f"{row.node} failed: {row.record.error if row.record else ''} "
                    f"(`raycai logs {name} {row.node}`)"
                )
            _check_deadline(deadline, view.not_ready_reason or "not ready")
            await asyncio.sleep(self.file_poll_s)


@contextlib.asynccontextmanager
async def staging_dir() -> AsyncIterator[Path]:
    """A private temporary directory for one command's mirror (the token passes there)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="raycai-remote-") as directory:
        yield Path(directory)


__all__ = [
    "DesiredStateChanged",
    "RemoteClusterManager",
    "RemoteObserver",
    "RemoteProject",
    "staging_dir",
]
