"""Where a cluster's files live in the project directory (shared by every node of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CLUSTERS_DIR = PurePosixPath(".raycai") / "clusters"


@dataclass(frozen=True)
class ClusterPaths:
    """Paths of one cluster under a project root. `relative` is what apps and scripts use."""

    project_dir: Path
    cluster: str

    @property
    def relative(self) -> PurePosixPath:
        return CLUSTERS_DIR / self.cluster

    @property
    def root(self) -> Path:
        return self.project_dir / self.relative

    @property
    def cluster_json(self) -> Path:
        return self.root / "cluster.json"

    @property
    def launcher_json(self) -> Path:
        return self.root / "launcher.json"

    @property
    def auth_token(self) -> Path:
        return self.root / "auth_token"

    @property
    def head_json(self) -> Path:
        return self.root / "head.json"

    @property
    def serve_json(self) -> Path:
        """The Serve config last accepted by Ray: the cluster's desired Serve state."""
        return self.root / "serve.json"

    @property
    def jobs_json(self) -> Path:
        """The ledger of the jobs raycai submitted (raycai_core.work.ledger)."""
        return self.root / "jobs.json"

    @property
    def jobs_lock(self) -> Path:
        """flock'ed around each read-modify-write of jobs.json (CLI and TUI both write)."""
        return self.root / ".jobs.lock"

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def lock_file(self) -> Path:
        """flock'ed by operations that change the cluster (raycai_core.cluster.lock)."""
        return self.root / ".lock"

    @property
    def drain_dir(self) -> Path:
        return self.root / "drain"

    def drain_request(self, node: str) -> Path:
        """Written by a scale-down, read by that worker's launcher (raycai_core.cluster.drain)."""
        return self.drain_dir / f"{node}.json"

    def script(self, role: str) -> Path:
        return self.root / f"{role}.py"

    def script_relative(self, role: str) -> str:
        """The app's `script` field: a path relative to the project root."""
        return str(self.relative / f"{role}.py")

    def node_record(self, node: str) -> Path:
        return self.nodes_dir / f"{node}.json"

    def node_log(self, node: str) -> Path:
        return self.logs_dir / f"{node}.log"


def clusters_root(project_dir: Path) -> Path:
    return project_dir / CLUSTERS_DIR


def cluster_names_on_disk(project_dir: Path) -> list[str]:
    root = clusters_root(project_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "cluster.json").is_file())
