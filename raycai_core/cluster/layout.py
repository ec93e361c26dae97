"""Where a cluster's files live in the project directory (shared by every node of it).

The launcher folder (`.raycai` unless RAYCAI_DIR or a command's `--dir` names another, e.g.
`raycai-clusters`: CML's default `.gitignore` leaves dot-folders out of the project's git
snapshots) is a project-level setting, never a spec field (the spec lives inside it). Each
cluster lives in `<folder>/clusters/<cluster>/`; the launchers and the head's programs know
their folder from the path they were rendered for (CLUSTER_DIR) or their own file's path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_FOLDER = ".raycai"
FOLDER_ENV = "RAYCAI_DIR"  # the launcher folder; `--dir` sets it for the command
_FOLDER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}")
# Folders raycai must never write into, whatever the user asks.
_RESERVED = frozenset({".", "..", ".git", ".venv", "venv", "__pycache__"})
CLUSTERS = "clusters"


class LauncherFolderError(ValueError):
    """A launcher folder name raycai refuses (the message says what is accepted)."""


def check_folder(name: str) -> str:
    """`name` if it is a plain folder name at the project root, else LauncherFolderError.

    One level only: the launchers' script paths, the `.gitignore` and `raycai list`'s search
    all assume `<root>/<folder>/clusters`; a deeper path buys nothing a plain name cannot."""
    text = name.strip()
    if not _FOLDER_RE.fullmatch(text) or text in _RESERVED:
        raise LauncherFolderError(
            f"launcher folder {name!r} is not allowed: use a plain folder name at the project "
            f"root (letters, digits, '.', '_', '-'; at most 64; no '/', no '..'; not "
            f"{', '.join(sorted(_RESERVED - {'.', '..'}))}), e.g. {DEFAULT_FOLDER} or "
            "raycai-clusters"
        )
    return text


def launcher_folder() -> str:
    """THE launcher folder in use: RAYCAI_DIR (which `--dir` sets), else `.raycai`.
    The doctor reports it; `folder_note()` says it in one line."""
    value = os.environ.get(FOLDER_ENV, "").strip()
    if not value:
        return DEFAULT_FOLDER
    try:
        return check_folder(value)
    except LauncherFolderError as exc:
        raise LauncherFolderError(f"{FOLDER_ENV}: {exc}") from None


def use_launcher_folder(name: str | None) -> str:
    """Make `name` (checked) the folder of this process and of the processes it starts
    (a `--dir` flag); None keeps RAYCAI_DIR or the default. Returns the folder in use."""
    if name is not None and name.strip():
        os.environ[FOLDER_ENV] = check_folder(name)
    return launcher_folder()


def folder_note(project_dir: Path | None = None) -> str:
    """One line for the doctor: which folder holds the launchers, and why that one."""
    folder = launcher_folder()
    how = f"{FOLDER_ENV} / --dir" if os.environ.get(FOLDER_ENV, "").strip() else "the default"
    where = f" ({project_dir / folder})" if project_dir is not None else ""
    dot = (
        "a dot-folder: CML's default .gitignore keeps it out of git snapshots"
        if folder.startswith(".")
        else "its .gitignore keeps auth_token out of git snapshots"
    )
    return f"launcher folder {folder}{where}, from {how}; {dot}"


def search_folders() -> list[str]:
    """Where clusters are looked for: the configured folder, then the default."""
    folder = launcher_folder()
    return [folder] if folder == DEFAULT_FOLDER else [folder, DEFAULT_FOLDER]


def _folder_of(project_dir: Path, cluster: str) -> str:
    """The folder holding `cluster`'s files: the configured one, else the default when the
    cluster lives there (made before the setting changed), else the configured one."""
    folders = search_folders()
    for folder in folders:
        if (Path(project_dir) / folder / CLUSTERS / cluster).is_dir():
            return folder
    return folders[0]


@dataclass(frozen=True)
class ClusterPaths:
    """Paths of one cluster under a project root. `relative` is what apps and scripts use.

    `folder` "" (the usual): the launcher folder in use, or the default folder when the
    cluster already lives there (see `_folder_of`)."""

    project_dir: Path
    cluster: str
    folder: str = ""

    def __post_init__(self) -> None:
        folder = self.folder or _folder_of(self.project_dir, self.cluster)
        object.__setattr__(self, "folder", check_folder(folder))

    @property
    def folder_root(self) -> Path:
        """The launcher folder (its `.gitignore` lives here)."""
        return self.project_dir / self.folder

    @property
    def gitignore(self) -> Path | None:
        """The folder's `.gitignore` keeping tokens out of CML's git snapshots; None for a
        dot-folder, which CML's default `.gitignore` leaves out whole."""
        return None if self.folder.startswith(".") else self.folder_root / ".gitignore"

    @property
    def relative(self) -> PurePosixPath:
        return PurePosixPath(self.folder) / CLUSTERS / self.cluster

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


def clusters_root(project_dir: Path, folder: str | None = None) -> Path:
    """`<folder>/clusters` under `project_dir` (the folder in use when not given)."""
    return project_dir / (folder or launcher_folder()) / CLUSTERS


def cluster_names_on_disk(project_dir: Path) -> list[str]:
    """The clusters with a cluster.json in the configured folder or the default one."""
    names: set[str] = set()
    for folder in search_folders():
        root = clusters_root(project_dir, folder)
        if root.is_dir():
            names |= {p.name for p in root.iterdir() if (p / "cluster.json").is_file()}
    return sorted(names)
