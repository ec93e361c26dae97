"""AMP job 1: the project venv with Ray for the cluster's nodes (`raycai setup-env`): the
Ray version and venv of RAYCAI_CLUSTER_SPEC's spec when one is given, else raycai's default
(Ray 2.60.0 in /home/cdsw/.venv). See amp/raycai_amp.py for the environment variables."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, "amp")  # CML runs a job from the project root; the jobs share amp/raycai_amp.py

from raycai_amp import EXIT_BAD_INPUT, SPEC_ENV, cluster_spec, install_raycai, raycai, say


def setup_env_args(spec_path: Path | None) -> list[str] | None:
    """`raycai setup-env`'s arguments for the spec (None: its Ray is on the runtime's PATH)."""
    if spec_path is None:
        return ["setup-env"]
    from raycai_core.spec import SpecError, load_spec_file

    try:
        spec = load_spec_file(spec_path)
    except SpecError as exc:
        say(f"{SPEC_ENV}: {exc}")
        sys.exit(EXIT_BAD_INPUT)
    venvs = [entry for entry in spec.ray.search if entry != "PATH"]
    if not venvs:
        say(f"{spec.name} takes Ray from the runtime's PATH (ray.search): no venv to build")
        return None
    return ["setup-env", "--ray-version", spec.ray.version, "--venv", venvs[0]]


def main() -> int:
    spec_path = cluster_spec()
    install_raycai()
    args = setup_env_args(spec_path)
    return 0 if args is None else raycai(*args)


code = main()  # at module level: CML may run a job's script under another __name__
if code:
    raise SystemExit(code)
