"""`raycai doctor`'s probe: can the workspace run an application whose script lives in the
launcher folder, and does such an application get workload credentials (CDSW_APIV2_KEY)?

A tiny Python script (not Ray) is written into the launcher folder, as a cluster's launchers
are (ClusterPaths), run as one application, waited on for at most a minute, then deleted with
its files. Only the doctor runs it: `up` never creates anything to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from raycai_core.atomic import atomic_write_text, read_json
from raycai_core.cluster.layout import ClusterPaths
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLError
from raycai_core.cml.models import AppStatus, CreateApplication

PROBE_TIMEOUT_S = 60.0
PROBE_PREFIX = "doctor-probe-"
# Writes what it sees next to itself, then stays up (an application that exits is FAILED).
PROBE_SCRIPT = """\
import json, os, time
here = os.path.dirname(os.path.abspath(__file__))
record = {"workload_key": bool(os.environ.get("CDSW_APIV2_KEY", "").strip()), "pid": os.getpid()}
with open(os.path.join(here, "result.json.tmp"), "w") as handle:
    json.dump(record, handle)
os.replace(os.path.join(here, "result.json.tmp"), os.path.join(here, "result.json"))
while True:
    time.sleep(1)
"""


@dataclass(frozen=True)
class ProbeResult:
    ran: bool | None  # True: the script ran; False: the workspace refused it; None: unknown
    workload_key: bool | None
    detail: str  # what happened, one line
    script: str  # the script's path relative to the project


async def run_probe(
    cml: CMLClient,
    project_dir: Path,
    runtime: str,
    *,
    timeout: float = PROBE_TIMEOUT_S,
    poll_s: float = 0.2,
) -> ProbeResult:
    """Create the probe application, wait for its record (or its failure), delete it."""
    paths = ClusterPaths(project_dir, PROBE_PREFIX + secrets.token_hex(4))
    script = paths.script_relative("probe")
    result_file = paths.root / "result.json"
    await asyncio.to_thread(_write, paths, PROBE_SCRIPT)
    request = CreateApplication(
        name=f"raycai-{paths.cluster}",
        subdomain=f"raycai-{paths.cluster}",
        description="raycai doctor: can an application run a script from the launcher folder",
        script=script,
        cpu=1,
        memory=1,
        runtime_identifier=runtime,
        bypass_authentication=False,
    )
    app_id = ""
    try:
        app = await cml.create_application(request)
        app_id = app.id
        deadline = time.monotonic() + timeout
        status = app.status
        while time.monotonic() < deadline:
            record = await asyncio.to_thread(read_json, result_file)
            if isinstance(record, dict):
                return ProbeResult(
                    True, bool(record.get("workload_key")), "the probe application ran", script
                )
            status = (await cml.get_application(app_id)).status
            if status == AppStatus.FAILED:
                return ProbeResult(
                    False, None, f"the probe application ran {script} and FAILED", script
                )
            await asyncio.sleep(poll_s)
        return ProbeResult(
            None,
            None,
            f"the probe application was still {status.value} after {timeout:g} s "
            "(quota, or a slow workspace)",
            script,
        )
    except CMLError as exc:
        return ProbeResult(None, None, f"the probe application could not be created: {exc}", script)
    finally:
        if app_id:
            with contextlib.suppress(CMLError):
                await cml.delete_application(app_id)
        await asyncio.to_thread(shutil.rmtree, paths.root, True)


def _write(paths: ClusterPaths, text: str) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.script("probe"), text)
