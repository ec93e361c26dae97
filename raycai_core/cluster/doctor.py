"""`raycai doctor`: every check against the workspace, the project and the specs, and the
one fix raycai may apply (the project's shared memory limit).

The checks measure against the given specs (a cluster's cluster.json or a spec file), or the
project's clusters when none is given. Checks needing no API are in preflight.py; the probe
application in probe.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from raycai_core.cluster.doctor_files import DoctorFiles, LocalFiles, check_ray_files
from raycai_core.cluster.layout import FOLDER_ENV, ClusterPaths, folder_note, launcher_folder
from raycai_core.cluster.preflight import (
    Check,
    check_head_autoscaler,
    check_quota,
    check_ray,
    check_reachability,
    check_runtimes,
    check_shared_memory,
    check_workload_key,
    needed_shared_memory_mb,
    session_workload_key,
)
from raycai_core.cluster.probe import PROBE_TIMEOUT_S, run_probe
from raycai_core.cluster.records import read_node_records
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import (
    CMLAuthError,
    CMLConnectionError,
    CMLError,
    CMLNotFound,
    CMLPermissionDenied,
)
from raycai_core.cml.models import Runtime
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec
from raycai_core.work.access import (
    ClusterAccessError,
    load_access,
    local_versions,
    version_problems,
)


@dataclass
class DoctorReport:
    project_id: str
    checks: list[Check] = field(default_factory=list)
    shared_memory_limit: int | None = None
    fixed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.failed for check in self.checks)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "project_id": self.project_id,
            "shared_memory_limit": self.shared_memory_limit,
            "checks": [check.to_json() for check in self.checks],
            "fixed": list(self.fixed),
        }


async def run_doctor(
    cml: CMLClient,
    project_dir: Path,
    specs: Sequence[ClusterSpec],
    existing: Sequence[str] = (),
    *,
    files: DoctorFiles | None = None,
    probe: bool = True,
    probe_timeout: float = PROBE_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Run every check; `existing`: the clusters whose joins are measured too, from their
    files under `project_dir` (the project, or remote mode's staging mirror). `files`: the
    project's files (None: on disk at `project_dir`; remote: through the files API)."""
    env = os.environ if environ is None else environ
    files = files or LocalFiles(project_dir)
    report = DoctorReport(cml.project_id)
    add = report.checks.append
    reached = await _credentials(cml, report)
    runtimes: list[Runtime] = []
    if reached:
        runtimes = await _runtimes(cml, specs, report)
    kernels = {r.image_identifier: r.kernel for r in runtimes}
    for spec in specs:
        if files.local:
            ray = partial(check_ray, project_dir, spec, run=True, runtime_kernels=kernels)
            add(await asyncio.to_thread(ray))
        elif reached:
            add(await check_ray_files(files, spec, kernels))
        else:
            add(
                Check(
                    "ray",
                    "info",
                    "not checked: the project's files are not here and the API did not answer",
                    cluster=spec.name,
                )
            )
    for name in existing:
        measure = partial(_existing_checks, project_dir, name, drivers=files.local)
        report.checks.extend(await asyncio.to_thread(measure))
    if reached:
        for spec in specs:
            add(check_shared_memory(report.shared_memory_limit, spec))
        if not specs:  # no cluster: what a cluster of raycai's default sizes needs
            add(check_shared_memory(report.shared_memory_limit, None))
    add(check_quota())
    if reached and probe:
        runtime = _probe_runtime(specs, runtimes)
        await _probe(cml, files, runtime, specs, report, probe_timeout, env)
    else:
        why = "the probe application was not run (--no-probe)" if reached else "no API"
        add(Check("launcher-folder", "info", f"{folder_note()}; not checked: {why}"))
        key = session_workload_key(env)
        how = "this session's environment" if key is not None else why
        for spec in specs or [None]:
            add(check_workload_key(key, spec, how))
    return report


async def apply_fixes(cml: CMLClient, report: DoctorReport, specs: Sequence[ClusterSpec]) -> None:
    """The fixes raycai may apply: the project's shared_memory_limit, nothing else (never
    lowered: only a failed check asks for it). The checks it settles are measured again
    from the value the workspace answers. No spec: raycai's default sizes."""
    wanted = fix_shared_memory_mb(specs)
    if not any(c.fixable and c.failed for c in report.checks):
        return
    before = report.shared_memory_limit
    await cml.update_project(shared_memory_limit=wanted)
    project = await cml.get_project()  # read back: what the workspace keeps
    report.shared_memory_limit = project.shared_memory_limit
    report.fixed.append(
        f"shared_memory_limit set to {project.shared_memory_limit} MB (was {before} MB); "
        "applications started from now on get it"
    )
    by_name: dict[str, ClusterSpec | None] = {spec.name: spec for spec in specs}
    if not specs:
        by_name[""] = None
    report.checks = [
        check_shared_memory(report.shared_memory_limit, by_name[c.cluster])
        if c.name == "shared-memory" and c.cluster in by_name
        else c
        for c in report.checks
    ]


def fix_shared_memory_mb(specs: Sequence[ClusterSpec]) -> int:
    """The limit `--fix` sets: the largest object store of the specs (none: raycai's
    default sizes)."""
    return max((needed_shared_memory_mb(s) for s in specs), default=needed_shared_memory_mb(None))


async def _credentials(cml: CMLClient, report: DoctorReport) -> bool:
    host = cml.credentials.host
    try:
        key = await cml.validate_key()
        project = await cml.get_project()
    except CMLAuthError as exc:
        fix = "set CML_API_KEY (or --api-key) to a valid API v2 key (User Settings > API Keys)"
        report.checks.append(Check("credentials", "fail", f"the API key was refused: {exc}", fix))
        return False
    except (CMLNotFound, CMLPermissionDenied) as exc:
        fix = "set CML_PROJECT_ID (or --project) to a project of yours (its URL holds the id)"
        report.checks.append(
            Check("credentials", "fail", f"project {cml.project_id} not reachable: {exc}", fix)
        )
        return False
    except CMLConnectionError as exc:
        fix = "check CML_HOST (or --host): the workspace's https:// URL"
        report.checks.append(Check("credentials", "fail", f"cannot reach {host}: {exc}", fix))
        return False
    except CMLError as exc:
        report.checks.append(Check("credentials", "fail", str(exc), "see the message"))
        return False
    report.shared_memory_limit = project.shared_memory_limit
    user = f" as {key.username}" if key.username else ""
    report.checks.append(
        Check("credentials", "ok", f"key valid{user}; project {project.name or project.id}")
    )
    return True


async def _runtimes(
    cml: CMLClient, specs: Sequence[ClusterSpec], report: DoctorReport
) -> list[Runtime]:
    try:
        runtimes = await cml.list_runtimes()
    except CMLError as exc:
        fix = "retry; ask the workspace admin if it persists"
        report.checks.append(Check("runtimes", "fail", f"could not list runtimes: {exc}", fix))
        return []
    identifiers = [r.image_identifier for r in runtimes]
    for spec in specs:
        report.checks.append(check_runtimes(spec, identifiers))
    if not specs:
        status = "ok" if runtimes else "fail"
        fix = "" if runtimes else "ask the workspace admin to enable a runtime"
        report.checks.append(Check("runtimes", status, f"{len(runtimes)} runtimes listed", fix))
    return runtimes


def _probe_runtime(specs: Sequence[ClusterSpec], runtimes: Sequence[Runtime]) -> str:
    known = {r.image_identifier for r in runtimes}
    for spec in specs:
        if spec.head.runtime_identifier in known:
            return spec.head.runtime_identifier
    return runtimes[0].image_identifier if runtimes else ""


async def _probe(
    cml: CMLClient,
    files: DoctorFiles,
    runtime: str,
    specs: Sequence[ClusterSpec],
    report: DoctorReport,
    timeout: float,
    env: Mapping[str, str],
) -> None:
    folder = launcher_folder()
    if not runtime:
        report.checks.append(
            Check("launcher-folder", "info", f"{folder_note()}; not checked: no runtime to run")
        )
        return
    result = await run_probe(cml, files, runtime, timeout=timeout)
    if result.ran:
        check = Check(
            "launcher-folder", "ok", f"{folder_note()}; {result.detail} ({result.script})"
        )
    elif result.ran is False:
        check = Check(
            "launcher-folder",
            "fail",
            f"{folder}/: {result.detail}: the workspace does not run scripts from it",
            f"use a launcher folder without a leading dot: {FOLDER_ENV}=raycai-clusters "
            "(or --dir raycai-clusters) for every raycai command",
        )
    else:
        check = Check("launcher-folder", "warn", f"{folder}/: not measured: {result.detail}")
    report.checks.append(check)
    key, how = result.workload_key, "the probe application's environment"
    if key is None:
        key = session_workload_key(env)
        how = "this session's environment" if key is not None else result.detail
    for spec in specs or [None]:
        report.checks.append(check_workload_key(key, spec, how))


def _existing_checks(project_dir: Path, name: str, *, drivers: bool = True) -> list[Check]:
    """An existing cluster: its joins (app -> app reachability) and (`drivers`: inside the
    project, where a driver can reach it) the `raycai env` version check of this Python
    against the cluster's."""
    paths = ClusterPaths(project_dir, name)
    records = read_node_records(paths)
    checks = [check_reachability(name, records, time.time())]
    head_key = check_head_autoscaler(name, records.get(HEAD_NODE))
    if head_key is not None:
        checks.append(head_key)
    if not drivers:
        return checks
    try:
        access = load_access(project_dir, name)
    except ClusterAccessError:
        return checks
    problems = version_problems(access, *local_versions())
    if problems:
        checks.append(
            Check(
                "driver-versions",
                "warn",
                "; ".join(problems),
                "see the found text (a driver here cannot use Ray Client)",
                cluster=name,
            )
        )
    else:
        checks.append(
            Check("driver-versions", "ok", "this Python and Ray match the cluster's", cluster=name)
        )
    return checks
