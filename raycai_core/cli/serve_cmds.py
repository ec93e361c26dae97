"""`raycai serve deploy|delete|status`: Ray Serve applications on a cluster.

`raycai serve NAME` is `raycai serve status NAME` (so `deploy`, `delete` and `status` are
reserved cluster names). Light like work_cmds: no pydantic, no CML client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from raycai_core.cli.options import target_options
from raycai_core.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, fail
from raycai_core.cli.work_cmds import access_of, print_rows, run, work_client
from raycai_core.target import Target

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from raycai_core.ray.models import ServeApplication, ServeStatus
    from raycai_core.work.access import ClusterAccess
    from raycai_core.work.serve_routes import RouteAddress

DEFAULT_WAIT_S = 300.0
APP_COLORS = {"RUNNING": "green", "DEPLOYING": "yellow", "DEPLOY_FAILED": "red", "UNHEALTHY": "red"}


def note(text: str, color: str | None = None) -> None:
    click.echo(click.style(text, fg=color) if color else text, err=True)


def run_serve(coro: Coroutine[Any, Any, Any]) -> Any:
    """`run`, with a config raycai cannot send as bad input."""
    from raycai_core.work.serve_config import ServeConfigError

    try:
        return run(coro)
    except ServeConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


class ServeGroup(click.Group):
    """`raycai serve NAME [--json]` reads as `raycai serve status NAME [--json]`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["status", *args]
        return super().parse_args(ctx, args)


@click.group(cls=ServeGroup)
def serve() -> None:
    """Ray Serve on a cluster: deploy config files, show and delete applications.

    \b
    raycai serve deploy demo serve_config.yaml
    raycai serve status demo          (or: raycai serve demo)
    raycai serve delete demo APP      (or all of Serve: raycai serve delete demo)

    Routes are reached through the head application's URL under /serve, with the cluster's
    Ray token: `raycai serve status` prints each route's URL and a curl line.
    """


# -- deploy ------------------------------------------------------------------------------------


@serve.command(short_help="Deploy a Serve config file (merged by application name).")
@click.argument("name")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Wait until the file's applications are RUNNING or failed (default: wait).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds --wait waits.",
)
@target_options
def deploy(target: Target, name: str, config: Path, wait: bool, timeout: float) -> None:
    """Deploy the applications of CONFIG (Ray Serve's config file, as `serve build` writes
    it) on cluster NAME, next to the ones already deployed.

    An application of the same name is replaced. Relative working_dir and py_modules paths
    (relative to CONFIG's directory, inside the project) become local:// URIs: the project
    directory is the same on every node. raycai decides where Serve listens: the file's
    proxy_location and http_options host and port are overwritten. Exit 1 when an
    application failed to deploy, 2 when Ray refused the config (nothing changed then).
    """
    from raycai_core.ray.errors import JobRefused, RayDashboardUnreachable
    from raycai_core.work import serve_deploy
    from raycai_core.work.serve_config import ServeConfigError

    access = access_of(target, name)
    try:
        prepared = serve_deploy.prepare_deploy(access, config)
    except ServeConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    for line in prepared.notes:
        note(f"note: {line}", "yellow")

    async def main() -> dict[str, ServeApplication | None] | None:
        async with work_client(access) as client:
            state = await client.serve_status()
            before = {app.name: app.last_deployed for app in state.applications}
            mismatch = serve_deploy.listen_mismatch(state, serve_deploy.serve_listen(access))
            if mismatch:
                note(f"warning: {mismatch.replace('NAME', name)}", "yellow")
            try:
                await serve_deploy.apply_config(client, access, prepared.config)
            except JobRefused as exc:
                raise JobRefused(
                    f"{exc}\nNothing changed: the running applications and "
                    f"{access.paths.serve_json.name} are as they were.",
                    status=exc.status,
                ) from None
            except RayDashboardUnreachable as exc:
                # The PUT may have reached Ray: the same deploy again is harmless.
                raise RayDashboardUnreachable(
                    f"{exc}\nRay may still apply the config: `raycai serve status {name}` "
                    f"shows what runs; deploying the same file again changes nothing more. "
                    f"{access.paths.serve_json.name} was not updated.",
                ) from None
            names = ", ".join(prepared.names)
            note(f"Ray accepted the config: {names} (stored in {access.paths.serve_json})")
            if not wait:
                return None
            return await serve_deploy.wait_settled(
                client, prepared.names, timeout=timeout, before=before
            )

    outcome = run_serve(main())
    if outcome is None:
        click.echo(f"Deploying; `raycai serve status {name}` shows progress and the URLs.")
        return
    sys.exit(report_outcome(name, outcome))


def report_outcome(name: str, outcome: dict[str, ServeApplication | None]) -> int:
    """One line per application; 0 when every one is RUNNING."""
    code = 0
    for app_name, app in outcome.items():
        status = app.status if app else "NOT_STARTED"
        line = f"{app_name}: {click.style(status, fg=APP_COLORS.get(status), bold=True)}"
        if app is not None and status != "RUNNING" and app.message.strip():
            line += f"\n  {app.message.strip().replace(chr(10), chr(10) + '  ')}"
        click.echo(line)
        if status != "RUNNING":
            code = EXIT_FAILED
    if code:
        still = [n for n, a in outcome.items() if a is None or a.status not in ("RUNNING",)]
        note(f"not RUNNING: {', '.join(still)} (`raycai serve status {name}`)", "red")
    else:
        click.echo(f"`raycai serve status {name}` prints the URLs and a curl line per route.")
    return code


# -- delete ------------------------------------------------------------------------------------


@serve.command(short_help="Delete one application, or all of Serve (asks first).")
@click.argument("name")
@click.argument("app", required=False)
@click.option("--yes", is_flag=True, help="Shut Serve down without asking.")
@target_options
def delete(target: Target, name: str, app: str | None, yes: bool) -> None:
    """Delete application APP of cluster NAME (the others keep running); without APP, shut
    all of Serve down (asks first)."""
    from raycai_core.work import serve_deploy

    access = access_of(target, name)
    if app is not None:

        async def remove() -> list[str]:
            from raycai_core.work.serve_config import app_names

            async with work_client(access) as client:
                sent = await serve_deploy.delete_app(client, access, app)
            return app_names(sent)

        left = run_serve(remove())
        click.echo(f"{app}: deleted; still deployed: {', '.join(left) or 'nothing'}")
        return
    if not yes:
        click.confirm(
            f"Shut Serve down on {name}? Every application and its replicas stop.", abort=True
        )

    async def stop() -> None:
        async with work_client(access) as client:
            await serve_deploy.shutdown(client, access)

    run_serve(stop())
    click.echo(f"Serve shut down on {name}.")


# -- status ------------------------------------------------------------------------------------


def serve_json(
    state: ServeStatus, routes: dict[str, RouteAddress], warnings: list[str]
) -> dict[str, Any]:
    def route(app: ServeApplication) -> dict[str, Any]:
        address = routes.get(app.name)
        if address is None:
            return {"url": None, "cml_url": None, "curl": None}
        return {"url": address.project_url, "cml_url": address.cml_url, "curl": address.curl}

    return {
        "running": state.running,
        "warnings": warnings,
        "applications": [
            {
                "name": app.name,
                "status": app.status,
                "route_prefix": app.route_prefix,
                **route(app),
                "message": app.message,
                "last_deployed": app.last_deployed,
                "deployments": [
                    {
                        "name": d.name,
                        "status": d.status,
                        "message": d.message,
                        "target_replicas": d.target_replicas,
                        "replicas": d.replicas,
                    }
                    for d in app.deployments
                ],
            }
            for app in state.applications
        ],
    }


def listen_warnings(access: ClusterAccess) -> list[str]:
    from raycai_core.work.serve_deploy import serve_listen

    listen = serve_listen(access)
    if not listen.pod:
        return []
    return [
        f'[serve] listen = "pod": every route also answers at http://{access.head.ip}:'
        f"{listen.port}/<route> on the pod network, to anyone, with no token"
    ]


@serve.command(short_help="Applications, replicas, route URLs and curl lines.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--show-token", is_flag=True, help="Put the Ray token itself in the curl lines (keep secret)."
)
@target_options
def status(target: Target, name: str, as_json: bool, show_token: bool) -> None:
    """Show Ray Serve on cluster NAME: applications, deployments, replicas, and each route's
    URL (through CML and inside the project) with a curl line for a session of the project.

    The curl line reads the workspace key from $CDSW_APIV2_KEY and the Ray token from its
    file; `--show-token` prints the token instead.
    """
    from raycai_core.work.serve_routes import route_addresses

    access = access_of(target, name)

    async def main() -> ServeStatus:
        async with work_client(access) as client:
            return await client.serve_status()

    state = run_serve(main())
    token = None
    if show_token:
        from raycai_core.cluster.records import read_token

        secret = read_token(access.paths)
        if secret is None:
            fail(
                f"the Ray token of {name!r} is missing ({access.paths.auth_token})", EXIT_BAD_INPUT
            )
        token = secret.reveal()
    with_routes = [(a.name, a.route_prefix) for a in state.applications if a.route_prefix]
    addresses = route_addresses(access, target.credentials, with_routes, token=token)
    routes = {a.application: a for a in addresses}
    warnings = listen_warnings(access)
    if as_json:
        click.echo(json.dumps(serve_json(state, routes, warnings), indent=2))
        return
    for warning in warnings:
        note(f"warning: {warning}", "yellow")
    if not state.applications:
        click.echo(f"Serve is not running on {name} (no applications).")
        return
    print_status(state)
    if addresses:
        click.echo("\nRoutes (the curl line works as printed in a session of the project):")
    for address in addresses:
        click.echo(f"\n{address.application} {address.route}")
        click.echo(f"  through CML:        {address.cml_url}")
        click.echo(f"  inside the project: {address.project_url}")
        click.echo(f"  {address.curl}")


def print_status(state: ServeStatus) -> None:
    rows = [("APPLICATION", "STATUS", "ROUTE")]
    rows += [(app.name, app.status, app.route_prefix or "-") for app in state.applications]
    print_rows(rows)
    for app in state.applications:
        if app.message and not app.healthy:
            click.echo(f"\n{app.name}: {app.message.strip()}")
        if not app.deployments:
            continue
        click.echo(f"\n{app.name} deployments:")
        rows = [("  DEPLOYMENT", "STATUS", "REPLICAS")]
        rows += [(f"  {d.name}", d.status, d.replicas_text()) for d in app.deployments]
        print_rows(rows)
        for d in app.deployments:
            if d.message and not d.healthy:
                click.echo(f"  {d.name}: {d.message.strip()}")
