"""`raycai doctor`: is this workspace and project ready for raycai's clusters, and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from raycai_core.cli.options import target_options
from raycai_core.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, fail, run
from raycai_core.cluster.desired import CorruptClusterFile, read_desired
from raycai_core.cluster.doctor import DoctorReport, apply_fixes, run_doctor
from raycai_core.cluster.layout import ClusterPaths, cluster_names_on_disk
from raycai_core.cluster.preflight import needed_shared_memory_mb, refusal, up_checks
from raycai_core.cml.client import CMLClient
from raycai_core.spec import ClusterSpec, SpecError, load_spec_file
from raycai_core.target import Target


def _specs(target: Target, name: str | None, spec_file: Path | None) -> tuple[list[Any], list[str]]:
    """(the specs measured against, the existing clusters whose joins are measured)."""
    try:
        if spec_file is not None:
            spec = load_spec_file(spec_file)
            exists = read_desired(ClusterPaths(target.project_dir, spec.name)) is not None
            return [spec], [spec.name] if exists else []
        names = [name] if name else cluster_names_on_disk(target.project_dir)
        specs = []
        for each in names:
            desired = read_desired(ClusterPaths(target.project_dir, each))
            if desired is None:
                fail(f"no cluster named {each!r} in this project (or give --file SPEC)", 2)
            specs.append(desired.spec)
        return specs, names
    except (SpecError, CorruptClusterFile) as exc:
        fail(str(exc), EXIT_BAD_INPUT)


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
    project: credentials and project, runtimes, Ray in the project venv, the project's
    shared memory against Ray's object store, quota (cannot be checked), workload
    credentials and the launcher folder (by a probe application, deleted after at most a
    minute), and for an existing cluster whether its workers reached the head. Exits 1 when
    a check fails. --fix sets the project's shared_memory_limit (after a confirmation;
    --yes skips it) and changes nothing else.
    """
    if name and spec_file:
        fail("give a cluster NAME or --file SPEC, not both", EXIT_BAD_INPUT)
    specs, existing = _specs(target, name, spec_file)

    async def main() -> DoctorReport:
        async with CMLClient(target.credentials) as cml:
            report = await run_doctor(cml, target.project_dir, specs, existing, probe=not no_probe)
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


def up_preflight(target: Target, spec: ClusterSpec) -> None:
    """`raycai up`'s part of the doctor: the checks that create and call nothing (project
    files, this environment). A spec that would certainly fail is refused with the doctor's
    message; the rest are warnings. Only where the project's files are (not remote)."""
    if not target.project_dir.is_dir():
        return
    checks = up_checks(target.project_dir, spec)
    refused = refusal(checks)
    if refused:
        fail(
            f"not creating {spec.name}: the cluster would fail (`raycai doctor {spec.name}` "
            f"checks everything):\n{refused}",
            EXIT_FAILED,
        )
    for check in checks:
        click.echo(click.style(f"warning: {check.line()}", fg="yellow"), err=True)


def _confirm(report: DoctorReport, specs: list[ClusterSpec]) -> bool:
    wanted = max(needed_shared_memory_mb(spec) for spec in specs)
    return click.confirm(
        f"Set the project's shared_memory_limit from {report.shared_memory_limit} MB to "
        f"{wanted} MB? It affects applications started afterwards (running clusters keep "
        "theirs until their applications restart).",
        default=False,
        err=True,
    )
