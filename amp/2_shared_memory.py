"""AMP job 2: `raycai doctor --fix --yes`: every check of the workspace and the project, and
the project's shared_memory_limit raised to what Ray's object store needs (30 % of the
largest node's memory; applications started from then on get it) for RAYCAI_CLUSTER_SPEC's
spec, or, when it is empty, for a cluster of raycai's default sizes (the doctor's measure
without a spec in a project with no cluster: 8 GB nodes, 2,458 MB), so that the project is
ready for one; a bigger cluster later gets `raycai up`'s warning and `raycai doctor NAME
--fix`. The limit is never lowered. The job fails when a check fails; its log has the
doctor's fix. Runs after job 1, so that the doctor finds Ray in the project venv."""

from __future__ import annotations

import sys

sys.path.insert(0, "amp")  # CML runs a job from the project root; the jobs share amp/raycai_amp.py

from raycai_amp import SPEC_ENV, cluster_spec, install_raycai, raycai, say


def main() -> int:
    spec_path = cluster_spec()
    install_raycai()
    args = ["doctor", "--fix", "--yes"]
    if spec_path is None:
        say(
            f"{SPEC_ENV} is empty: the shared memory is sized for a cluster of raycai's "
            "default sizes (later, `raycai doctor NAME --fix` sizes it for cluster NAME)"
        )
    else:
        args += ["--file", str(spec_path)]
    return raycai(*args)


code = main()  # at module level: CML may run a job's script under another __name__
if code:
    raise SystemExit(code)
