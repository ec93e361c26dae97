"""`raycai doctor`: is this workspace and project ready for raycai's clusters, and the fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import click

from raycai_core.cli.options import target_options
from raycai_core.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, fail, run
from raycai_core.cluster.desired import CorruptClusterFile, read_desired
from raycai_core.cluster.doctor import (
    DoctorReport,
    apply_fixes,
    fix_shared_memory_mb,
    run_doctor,
)
from raycai_core.cluster.doctor_files import RemoteFiles, check_ray_files
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.preflight import (
    Check,
    check_shared_memory,
    refusal,
    up_checks,
)
from raycai_core.cluster.remote import RemoteProject, staging_dir
from raycai_core.cluster.types import ClusterError, ClusterNotFound
from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLError
from raycai_core.cml.files import ProjectFiles
from raycai_core.spec import ClusterSpec, SpecError, load_spec_file
from raycai_core.target import Target


async def _specs(
    where: Path, given: ClusterSpec | None, name: str | None, remote: RemoteProject | None
) -> tuple[list[ClusterSpec], list[str]]:
    """(the specs measured against, the existing clusters whose joins are measured), from
    the clusters' files under `where`: the project, or (remote) the staging mirror that
    `remote` pulls them into first."""
    if given is not None:
        names = [given.name]
    elif name:
        names = [name]
    elif remote is not None:
        listed = await remote.files.list(ClusterPaths(where, "x").relative.parent.as_posix())
        names = sorted(e.name for e in listed if e.is_dir)
    else:
        names = await asyncio.to_thread(cluster_names_on_disk, where)
    if remote is not None:
        await asyncio.gather(*(remote.pull(each, token=False) for each in names))
    try:
        desired = {
            each: await asyncio.to_thread(read_desired, ClusterPaths(where, each)) for each in names
        }
    except CorruptClusterFile as exc:
        raise SpecError(str(exc)) from None
    if given is not None:
        return [given], [given.name] if desired[given.name] is not None else []
    for each, state in desired.items():
        if state is None:
            raise ClusterNotFound(
                f"no cluster named {each!r} in this project (or give --file SPEC)"
            )
    return [state.spec for state in desired.values() if state is not None], names


@click.command()
@click.argument("name", required=False)
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Measure against this cluster spec (TOML) instead of a cluster's.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fix", is_flag=True, help="Apply the fixes raycai may apply (shared memory).")
@click.option("--yes", is_flag=True, help="With --fix: do not ask for confirmation.")
@click.option(
    "--no-probe",
    is_flag=True,
    help="Skip the probe application (launcher folder and workload credentials).",
)
@target_options
def doctor(
    target: Target,
    name: str | None,
    spec_file: Path | None,
    as_json: bool,
    fix: bool,
    yes: bool,
    no_probe: bool,
) -> None:
    """Check that the workspace and project can run the cluster; one check per line.

    Measures against cluster NAME's spec, a --file SPEC, or else every cluster of the
    project (none: a cluster of raycai's default sizes): credentials and project, runtimes,
    Ray in the project venv, the project's shared memory against Ray's object store, quota
    (cannot be checked), workload credentials and the launcher folder (by a probe
    application, deleted after at most a minute), and for an existing cluster whether its
    workers reached the head. Exits 1 when a check fails. --fix raises the project's
    shared_memory_limit (after a confirmation; --yes skips it) and changes nothing else.
    Works from outside the project too (--remote): the files through the API.
    """
    if name and spec_file:
        fail("give a cluster NAME or --file SPEC, not both", EXIT_BAD_INPUT)
    try:
        given = load_spec_file(spec_file) if spec_file is not None else None
    except SpecError as exc:
        fail(str(exc), EXIT_BAD_INPUT)

    async def main() -> DoctorReport:
        async with CMLClient(target.credentials) as cml, contextlib.AsyncExitStack() as stack:
            where, remote, files = target.project_dir, None, None
            if target.remote:  # the project's files through the API, mirrored in staging
                where = await stack.enter_async_context(staging_dir())
                remote = RemoteProject(ProjectFiles(cml), where)
                files = RemoteFiles(remote.files)
            specs, existing = await _specs(where, given, name, remote)
            report = await run_doctor(cml, where, specs, existing, files=files, probe=not no_probe)
            fixable = any(c.fixable and c.failed for c in report.checks)
            if fix and fixable and (yes or _confirm(report, specs)):
                await apply_fixes(cml, report, specs)
            return report

    report = run(main())
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for check in report.checks:
            click.echo(check.line())
        for line in report.fixed:
            click.echo(f"FIXED {line}")
        fixable = any(c.fixable and c.failed for c in report.checks)
        if fixable and not fix:
            click.echo("`raycai doctor --fix` applies the fixes marked above.", err=True)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


def up_preflight(target: Target, spec: ClusterSpec, *, exists: bool = False) -> None:
    """`raycai up`'s part of the doctor that reads files: the checks that create and call
    nothing (project files, this environment). A spec that would certainly fail is refused
    with the doctor's message (`exists`: of a cluster that exists, "not changing"); the rest
    are warnings. Only where the project's files are (not remote)."""
    if not target.project_dir.is_dir():
        return
    refused = _refuse_or_warn(spec, up_checks(target.project_dir, spec), exists=exists)
    if refused:
        fail(refused, EXIT_FAILED)


async def up_project_checks(cml: CMLClient, spec: ClusterSpec, *, remote: bool = False) -> None:
    """`raycai up`'s part of the doctor that reads the project through the API, before
    anything is created, on up's own client: its shared_memory_limit against the spec's
    object store (one GET), and, remote (the files are not here), the project venv's Ray by
    its files (4 to 5 reads). Raises ClusterError (the doctor's message) when the cluster
    would fail; warns for the rest. A project it cannot read is up's own calls' to report."""
    checks: list[Check] = []
    try:
        project = await cml.get_project()
        checks.append(check_shared_memory(project.shared_memory_limit, spec))
        if remote:
            checks.append(await check_ray_files(RemoteFiles(ProjectFiles(cml)), spec))
    except CMLError:
        pass
    refused = _refuse_or_warn(spec, [c for c in checks if c.status in ("warn", "fail")])
    if refused:
        raise ClusterError(refused)


def _refuse_or_warn(spec: ClusterSpec, checks: list[Check], exists: bool = False) -> str | None:
    """The refusal's message when a check blocks `up`; else each check as a warning."""
    refused = refusal(checks)
    if refused:
        doing, what = ("changing", "its nodes") if exists else ("creating", "the cluster")
        return (
            f"not {doing} {spec.name}: {what} would fail (`raycai doctor {spec.name}` "
            f"checks everything):\n{refused}"
        )
    for check in checks:
        click.echo(click.style(f"warning: {check.line()}", fg="yellow"), err=True)
    return None


def _confirm(report: DoctorReport, specs: list[ClusterSpec]) -> bool:
    wanted = fix_shared_memory_mb(specs)
    return click.confirm(
        f"Set the project's shared_memory_limit from {report.shared_memory_limit} MB to "
        f"{wanted} MB? It affects applications started afterwards (running clusters keep "
        "theirs until their applications restart).",
        default=False,
        err=True,
    )
