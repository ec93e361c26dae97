"""AMP job 3: when the importer gave a cluster spec (RAYCAI_CLUSTER_SPEC), create that
cluster and wait until every node joined (`raycai up --file SPEC`; run again, it converges
the cluster to the spec). Without one, nothing is created."""

from __future__ import annotations

import sys

sys.path.insert(0, "amp")  # CML runs a job from the project root; the jobs share amp/raycai_amp.py

from raycai_amp import SPEC_ENV, cluster_spec, install_raycai, raycai, say


def main() -> int:
    spec_path = cluster_spec()
    if spec_path is None:
        say(
            f"{SPEC_ENV} is empty: no cluster created (create one later in a session: "
            "`raycai up --file cluster.toml`, or raycai-tui)"
        )
        return 0
    install_raycai()
    return raycai("up", "--file", str(spec_path))


code = main()  # at module level: CML may run a job's script under another __name__
if code:
    raise SystemExit(code)
