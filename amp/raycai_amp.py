"""What the AMP's job scripts (amp/[0-9]_*.py) share: install raycai from the project, run
its CLI, and find the cluster spec the importer gave.

CML runs each job in its own engine, from the project's root (/home/cdsw), which holds this
repository; the workload's CDSW_DOMAIN, CDSW_APIV2_KEY and CDSW_PROJECT_ID give raycai its
workspace and project, as in a session. So every script installs raycai before it uses it
(`pip install` puts it in the project's ~/.local, which later engines see), then runs
`python -m raycai_core.cli.main` (`~/.local/bin` may not be on the job's PATH).

The AMP's environment variables (.project-metadata.yaml):
  RAYCAI_CLUSTER_SPEC  the cluster to create: a spec file's path in the project
                       (`cluster.toml`), or the spec's TOML itself (a value with a newline);
                       empty: the AMP creates no cluster, and the shared memory step has no
                       spec to measure against.
  RAYCAI_PACKAGE       what pip installs (a path, a git URL, a wheel); empty: the project,
                       i.e. this repository.
  RAYCAI_DIR           the launcher folder of every raycai command of the project (empty:
                       `.raycai`); raycai reads it itself.
For tests only: RAYCAI_AMP_SKIP_PIP=1 skips pip when raycai is already importable (the line
saying what would be installed is still printed).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SPEC_ENV = "RAYCAI_CLUSTER_SPEC"
PACKAGE_ENV = "RAYCAI_PACKAGE"
SKIP_PIP_ENV = "RAYCAI_AMP_SKIP_PIP"
EXIT_BAD_INPUT = 2


def project_root() -> Path:
    """Where CML runs a job: the project's files (and this repository)."""
    return Path.cwd()


def install_raycai() -> None:
    """`pip install` raycai from RAYCAI_PACKAGE, else from the project; exits on failure."""
    source = os.environ.get(PACKAGE_ENV, "").strip() or str(project_root())
    importable = importlib.util.find_spec("raycai_core") is not None
    if os.environ.get(SKIP_PIP_ENV) == "1" and importable:
        say(f"pip install {source}: skipped ({SKIP_PIP_ENV}=1 and raycai is importable)")
        return
    say(f"pip install {source}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source])
    if done.returncode != 0:
        say(f"pip could not install raycai from {source} (see above); set {PACKAGE_ENV}")
        sys.exit(done.returncode)


def raycai(*args: str) -> int:
    """Run the raycai CLI in this Python; its output goes to the job's log."""
    say("raycai " + " ".join(args))
    return subprocess.run([sys.executable, "-m", "raycai_core.cli.main", *args]).returncode


def cluster_spec() -> Path | None:
    """The spec file RAYCAI_CLUSTER_SPEC names (TOML text is written to a temporary file),
    or None when it is empty. Exits with a clear line when it names no file."""
    value = os.environ.get(SPEC_ENV, "").strip()
    if not value:
        return None
    if "\n" in value:
        path = Path(tempfile.mkdtemp(prefix="raycai-amp-")) / "cluster.toml"
        path.write_text(value + "\n", encoding="utf-8")
        return path
    path = project_root() / value
    if not path.is_file():
        say(
            f"{SPEC_ENV}={value!r}: no such file in the project ({project_root()}); give a "
            "spec file's path in the project (cluster.toml) or the spec's TOML itself"
        )
        sys.exit(EXIT_BAD_INPUT)
    return path


def say(line: str) -> None:
    print(f"[raycai AMP] {line}", flush=True)
