"""`raycai doctor`'s probe: can the workspace run an application whose script lives in the
launcher folder, and does such an application get workload credentials (CDSW_APIV2_KEY)?

A tiny Python script (not Ray) is written into the launcher folder, as a cluster's launchers
are (ClusterPaths), run as one application, waited on for at most a minute, then deleted with
its files and the folders it had to make. Only the doctor runs it: `up` never creates
anything to check. On disk or through the files API (remote), the same steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from raycai_core.cluster.doctor_files import DoctorFiles, missing_dirs
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
    files: DoctorFiles,
    runtime: str,
    *,
    timeout: float = PROBE_TIMEOUT_S,
    poll_s: float = 0.2,
) -> ProbeResult:
    """Create the probe application, wait for its record (or its failure), delete it with
    its files and the folders it made. `files`: the project's, on disk or through the API."""
    # Relative paths alone: the same on disk and through the files API.
    paths = ClusterPaths(Path("."), PROBE_PREFIX + secrets.token_hex(4))
    script = paths.script_relative("probe")
    root = str(paths.relative)
    made = await missing_dirs(files, root)
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
        await files.write(script, PROBE_SCRIPT.encode())
        app = await cml.create_application(request)
        app_id = app.id
        deadline = time.monotonic() + timeout
        status = app.status
        while time.monotonic() < deadline:
            record = _parse(await files.read(f"{root}/result.json"))
            if record is not None:
                return ProbeResult(
                    True, bool(record.get("workload_key")), "the probe application ran", script
                )
            status = (await cml.get_application(app_id)).status
            if status == AppStatus.FAILED:
                return ProbeResult(
                    False, None, f"the probe application ran {script} and FAILED", script
                )
            await asyncio.sleep(poll_s if files.local else max(poll_s, 1.0))
        return ProbeResult(
            None,
            None,
            f"the probe application was still {status.value} after {timeout:g} s "
            "(quota, or a slow workspace)",
            script,
        )
    except CMLError as exc:
        return ProbeResult(None, None, f"the probe application failed to run: {exc}", script)
    finally:
        if app_id:
            with contextlib.suppress(CMLError):
                await cml.delete_application(app_id)
        with contextlib.suppress(CMLError):
            await files.remove(root)
            for directory in made[1:]:  # the folders it made, deepest first, when empty
                if await files.list(directory):
                    break
                await files.remove(directory)


def _parse(data: bytes | None) -> dict[str, object] | None:
    try:
        record = json.loads(data) if data else None
    except ValueError:  # read while being written (remote: no atomic rename seen)
        return None
    return record if isinstance(record, dict) else None
