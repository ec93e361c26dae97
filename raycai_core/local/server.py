"""The HTTP API: the spec subset under /api/v2 (as CML's grpc-gateway serves it) and the
test hooks under /_local. Handlers shape every response from the records' `to_api()`."""

from __future__ import annotations

import hmac
import logging
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from aiohttp import web

from raycai_core.local import bodies, files, listing
from raycai_core.local.errors import ApiError, bad_request, error_response, not_found
from raycai_core.local.faults import FaultConfig, Handler
from raycai_core.local.state import (
    AppRecord,
    ProjectRecord,
    WorkspaceState,
    new_id,
    new_subdomain,
    now_rfc3339,
)

if TYPE_CHECKING:
    from raycai_core.local.workspace import LocalWorkspace

log = logging.getLogger(__name__)

SUBDOMAIN_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
APP_ID = r"{application_id:[^{}/:]+}"


def build_app(ws: LocalWorkspace) -> web.Application:
    api = Api(ws)
    # The ingress goes first: application hosts never reach the stats, faults or API auth.
    app = web.Application(
        middlewares=[ws.ingress.middleware, ws.faults.middleware, _errors, _auth(ws)],
        client_max_size=16 * 2**20,
    )
    p = "/api/v2/projects/{project_id}"
    app.router.add_post("/api/v2/auth/validate_key", api.validate_key)
    app.router.add_get("/api/v2/runtimes", api.list_runtimes)
    app.router.add_get("/api/v2/runtimeaddons", api.list_runtime_addons)
    app.router.add_get("/api/v2/projects", api.list_projects)
    app.router.add_post("/api/v2/projects", api.create_project)
    app.router.add_get(p, api.get_project)
    app.router.add_patch(p, api.update_project)
    app.router.add_delete(p, api.delete_project)
    app.router.add_get(f"{p}/applications", api.list_apps)
    app.router.add_post(f"{p}/applications", api.create_app)
    app.router.add_get(f"{p}/applications/{APP_ID}", api.get_app)
    app.router.add_patch(f"{p}/applications/{APP_ID}", api.update_app)
    app.router.add_delete(f"{p}/applications/{APP_ID}", api.delete_app)
    app.router.add_post(f"{p}/applications/{APP_ID}:restart", api.restart_app)
    app.router.add_post(f"{p}/applications/{APP_ID}:stop", api.stop_app)
    app.router.add_post(f"{p}/files", api.upload_files)
    app.router.add_get(f"{p}/files", api.list_files)  # the root, e.g. after "files/." is normalised
    app.router.add_post(p + "/files/{path:.+}:download", api.download_file)
    app.router.add_get(p + "/files/{path:.*}", api.list_files)
    app.router.add_patch(p + "/files/{path:.*}", api.rename_file)
    app.router.add_delete(p + "/files/{path:.*}", api.delete_file)
    app.router.add_get("/_local/stats", api.get_stats)
    app.router.add_post("/_local/stats/reset", api.reset_stats)
    app.router.add_get("/_local/faults", api.get_faults)
    app.router.add_put("/_local/faults", api.put_faults)
    app.router.add_get("/_local/config", api.get_config)
    app.router.add_put("/_local/config", api.put_config)
    app.router.add_get("/_local/apps", api.list_app_info)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPMethodNotAllowed:
        return error_response(501, "Method Not Allowed")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return error_response(500, "internal error")


def _auth(ws: LocalWorkspace) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token.strip().encode()
        # The user's key, or the workload key the workspace gives its apps (same user).
        known = [ws.api_key.encode(), ws.workload_key.encode()]
        if scheme.lower() != "bearer" or not any([hmac.compare_digest(given, k) for k in known]):
            raise ApiError(401, "Unauthenticated: a valid API key is required (Bearer token)")
        return await handler(request)

    return auth


async def _json_body(request: web.Request, fields: dict[str, str], message: str) -> dict[str, Any]:
    return bodies.parse_body(await request.read(), fields, message)


def _check_script(script: str) -> str:
    path = PurePosixPath(script)
    if not script.strip():
        raise bad_request("script is required")
    if path.is_absolute() or ".." in path.parts:
        raise bad_request(f"script {script!r} must be a path relative to the project root")
    return script


def _check_resources(values: dict[str, Any]) -> None:
    for name in ("cpu", "memory"):
        if name in values and (not math.isfinite(values[name]) or values[name] < 0):
            raise bad_request(f"{name} must be a non-negative number")
    if values.get("nvidia_gpu", 0) < 0:
        raise bad_request("nvidia_gpu must not be negative")


class Api:
    def __init__(self, ws: LocalWorkspace) -> None:
        self.ws = ws

    @property
    def state(self) -> WorkspaceState:
        return self.ws.store.state

    def _save(self) -> None:
        self.ws.store.save_soon()

    # -- lookups -------------------------------------------------------------------------

    def project(self, request: web.Request) -> ProjectRecord:
        project_id = request.match_info["project_id"]
        project = self.state.projects.get(project_id)
        if project is None:
            raise not_found(f"project {project_id!r}")
        return project

    def app(self, request: web.Request) -> AppRecord:
        project = self.project(request)
        app_id = request.match_info["application_id"]
        app = self.state.apps.get(app_id)
        if app is None or app.project_id != project.id:
            raise not_found(f"application {app_id!r}")
        return app

    def _list(
        self,
        request: web.Request,
        items: list[dict[str, Any]],
        filter_keys: tuple[str, ...],
        sort_keys: tuple[str, ...],
    ) -> tuple[list[dict[str, Any]], str]:
        query = request.query
        search = listing.parse_filter(query.get("search_filter"), filter_keys)
        sort = listing.parse_sort(query.get("sort"), sort_keys)
        config = self.ws.config
        size = listing.parse_page_size(
            query.get("page_size"), config.page_size_default, config.page_size_max
        )
        selected = listing.sort_items([i for i in items if listing.matches(i, search)], sort)
        context = [request.path, sorted(search.items()), sort]
        return listing.page(
            selected, page_size=size, page_token=query.get("page_token"), context=context
        )

    # -- auth, runtimes ------------------------------------------------------------------

    async def validate_key(self, request: web.Request) -> web.Response:
        await _json_body(request, bodies.VALIDATE_KEY, "ValidateAPIKeyRequest")
        return web.json_response(
            {"valid": True, "username": self.state.user["username"], "message": ""}
        )

    async def list_runtimes(self, request: web.Request) -> web.Response:
        items = [dict(r) for r in self.ws.config.runtimes]
        keys = listing.RUNTIME_KEYS
        runtimes, token = self._list(request, items, keys, keys)
        return web.json_response({"runtimes": runtimes, "next_page_token": token})

    async def list_runtime_addons(self, request: web.Request) -> web.Response:
        items = [dict(a) for a in self.ws.config.runtime_addons]
        keys = listing.ADDON_KEYS
        addons, token = self._list(request, items, keys, keys)
        return web.json_response({"runtime_addons": addons, "next_page_token": token})

    # -- projects ------------------------------------------------------------------------

    async def list_projects(self, request: web.Request) -> web.Response:
        for flag in ("include_public_projects", "include_all_projects"):
            if request.query.get(flag, "false").lower() not in ("true", "false", "1", "0"):
                raise bad_request(f'invalid value for bool field "{flag}"')
        projects = sorted(self.state.projects.values(), key=lambda p: p.seq)
        items, token = self._list(
            request,
            [p.to_api() for p in projects],
            listing.PROJECT_FILTER_KEYS,
            listing.PROJECT_SORT_KEYS,
        )
        return web.json_response({"projects": items, "next_page_token": token})

    def _check_project_name(self, name: str, exclude: str | None = None) -> str:
        name = name.strip()
        if not name:
            raise bad_request("name is required")
        for other in self.state.projects.values():
            if other.name == name and other.id != exclude:
                raise ApiError(409, f"a project named {name!r} already exists")
        return name

    async def create_project(self, request: web.Request) -> web.Response:
        body = await _json_body(request, bodies.CREATE_PROJECT, "CreateProjectRequest")
        name = self._check_project_name(body.get("name", ""))
        project = self.state.add_project(
            name,
            description=body.get("description", ""),
            visibility=body.get("visibility") or "private",
            environment=body.get("environment", {}),
            shared_memory_limit=body.get("shared_memory_limit"),
        )
        self.ws.project_dir_of(project.id).mkdir(parents=True, exist_ok=True)
        await self.ws.store.save()
        return web.json_response(project.to_api())

    async def get_project(self, request: web.Request) -> web.Response:
        return web.json_response(self.project(request).to_api())

    async def update_project(self, request: web.Request) -> web.Response:
        project = self.project(request)
        body = await _json_body(request, bodies.PROJECT, "Project")
        if "name" in body:
            project.name = self._check_project_name(body["name"], exclude=project.id)
        if "environment" in body:
            project.environment = bodies.parse_environment(body["environment"])
        for name in (
            "description",
            "visibility",
            "shared_memory_limit",
            "ephemeral_storage_request",
            "ephemeral_storage_limit",
        ):
            if name in body:
                setattr(project, name, body[name])
        project.updated_at = now_rfc3339()
        self._save()
        return web.json_response(project.to_api())

    async def delete_project(self, request: web.Request) -> web.Response:
        project = self.project(request)
        apps = [a for a in self.state.apps.values() if a.project_id == project.id]
        for app in apps:
            del self.state.apps[app.id]
            self.ws.supervisor.request_delete(app)
        del self.state.projects[project.id]
        self.ws.remove_project_dir_later(project.id)
        await self.ws.store.save()
        return web.json_response({})

    # -- applications --------------------------------------------------------------------

    async def list_apps(self, request: web.Request) -> web.Response:
        project = self.project(request)
        apps = sorted(
            (a for a in self.state.apps.values() if a.project_id == project.id),
            key=lambda a: a.seq,
        )
        items, token = self._list(
            request, [a.to_api() for a in apps], listing.APP_FILTER_KEYS, listing.APP_SORT_KEYS
        )
        return web.json_response({"applications": items, "next_page_token": token})

    def _check_subdomain(self, subdomain: str, exclude: str | None = None) -> str:
        if len(subdomain) > 63 or not SUBDOMAIN_RE.match(subdomain):
            raise bad_request(
                f"invalid subdomain {subdomain!r}: lower-case letters, digits and inner "
                "hyphens, at most 63 characters"
            )
        for other in self.state.apps.values():
            if other.subdomain == subdomain and other.id != exclude:
                raise ApiError(409, f"subdomain {subdomain!r} is already in use in this workspace")
        return subdomain

    def _check_runtime(self, identifier: str) -> str:
        if not identifier:
            raise bad_request("runtime_identifier is required in projects that use runtimes")
        if identifier not in {r["image_identifier"] for r in self.ws.config.runtimes}:
            raise bad_request(f"runtime {identifier!r} is not available in this workspace")
        return identifier

    def _check_addons(self, identifiers: list[str]) -> list[str]:
        known = {a.get("identifier") for a in self.ws.config.runtime_addons}
        for identifier in identifiers:
            if identifier not in known:
                raise bad_request(f"runtime addon {identifier!r} is not available")
        return identifiers

    async def create_app(self, request: web.Request) -> web.Response:
        project = self.project(request)
        body = await _json_body(request, bodies.CREATE_APPLICATION, "CreateApplicationRequest")
        name = body.get("name", "").strip()
        if not name:
            raise bad_request("name is required")
        script = _check_script(body.get("script", ""))
        subdomain = body.get("subdomain", "")
        if not subdomain:
            subdomain = new_subdomain()
            while any(a.subdomain == subdomain for a in self.state.apps.values()):
                subdomain = new_subdomain()
        self._check_subdomain(subdomain)
        _check_resources(body)
        stamp = now_rfc3339()
        app = AppRecord(
            id=new_id(),
            project_id=project.id,
            name=name,
            subdomain=subdomain,
            script=script,
            creator=dict(self.state.user),
            created_at=stamp,
            updated_at=stamp,
            seq=self.state.take_seq(),
            description=body.get("description", ""),
            kernel=body.get("kernel", ""),
            # proto3 cannot tell 0 from unset: 0 means the default (1 vCPU, 1 GB).
            cpu=body.get("cpu") or 1.0,
            memory=body.get("memory") or 1.0,
            nvidia_gpu=body.get("nvidia_gpu", 0),
            bypass_authentication=body.get("bypass_authentication", False),
            environment=body.get("environment", {}),
            runtime_identifier=self._check_runtime(body.get("runtime_identifier", "")),
            runtime_addon_identifiers=self._check_addons(body.get("runtime_addon_identifiers", [])),
            run_as=body.get("run_as", 0),
            cdv_app=body.get("cdv_app", False),
            accelerator_label_id=str(body.get("accelerator_label_id", 0)),
            resource_group_id=body.get("resource_group_id", 0),
            resource_profile_id=body.get("resource_profile_id", 0),
        )
        self.state.apps[app.id] = app
        self.ws.supervisor.launch(app)
        # The answer is the application as created (STARTING), as CML's: a script that
        # fails at once may already have failed while the state was being saved.
        created = app.to_api()
        await self.ws.store.save()
        return web.json_response(created)

    async def get_app(self, request: web.Request) -> web.Response:
        return web.json_response(self.app(request).to_api())

    async def update_app(self, request: web.Request) -> web.Response:
        """Changes apply at the app's next start (as CML does with a running app's settings)."""
        app = self.app(request)
        body = await _json_body(request, bodies.APPLICATION, "Application")
        _check_resources(body)
        for name in ("cpu", "memory"):
            if body.get(name) == 0:
                del body[name]  # proto3: zero is unset
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = body["name"].strip()
            if not changes["name"]:
                raise bad_request("name must not be empty")
        if "script" in body:
            changes["script"] = _check_script(body["script"])
        if "subdomain" in body:
            changes["subdomain"] = self._check_subdomain(body["subdomain"], exclude=app.id)
        if "environment" in body:
            changes["environment"] = bodies.parse_environment(body["environment"])
        if "runtime_identifier" in body:
            changes["runtime_identifier"] = self._check_runtime(body["runtime_identifier"])
        if "runtime_addon_identifiers" in body:
            changes["runtime_addon_identifiers"] = self._check_addons(
                body["runtime_addon_identifiers"]
            )
        if "accelerator_label_id" in body:
            changes["accelerator_label_id"] = str(body["accelerator_label_id"])
        for name in (
            "description",
            "kernel",
            "cpu",
            "memory",
            "nvidia_gpu",
            "bypass_authentication",
            "run_as",
            "cdv_app",
            "resource_group_id",
            "resource_profile_id",
        ):
            if name in body:
                changes[name] = body[name]
        for name, value in changes.items():
            setattr(app, name, value)
        app.touch()
        self._save()
        return web.json_response(app.to_api())

    async def delete_app(self, request: web.Request) -> web.Response:
        app = self.app(request)
        del self.state.apps[app.id]
        self.ws.supervisor.request_delete(app)
        await self.ws.store.save()
        return web.json_response({})

    async def stop_app(self, request: web.Request) -> web.Response:
        app = self.app(request)
        self.ws.supervisor.request_stop(app)
        return web.json_response(app.to_api())

    async def restart_app(self, request: web.Request) -> web.Response:
        app = self.app(request)
        self.ws.supervisor.request_restart(app)
        return web.json_response(app.to_api())

    # -- project files -------------------------------------------------------------------

    async def upload_files(self, request: web.Request) -> web.Response:
        project = self.project(request)
        await files.upload(request, self.ws.project_dir_of(project.id))
        return web.json_response({})

    async def list_files(self, request: web.Request) -> web.Response:
        project = self.project(request)
        listed = await files.list_dir(
            self.ws.project_dir_of(project.id), request.match_info.get("path", "")
        )
        return web.json_response({"files": listed})

    async def download_file(self, request: web.Request) -> web.Response:
        project = self.project(request)
        data = await files.read(self.ws.project_dir_of(project.id), request.match_info["path"])
        return web.Response(body=data, content_type="application/octet-stream")

    async def rename_file(self, request: web.Request) -> web.Response:
        """UpdateProjectFileMetadata: the body's `path` is the new path (a rename)."""
        project = self.project(request)
        body = await _json_body(request, bodies.FILE_INFO, "FileInfo")
        if not body.get("path"):
            raise bad_request("path (the new path) is required")
        info = await files.rename(
            self.ws.project_dir_of(project.id), request.match_info["path"], body["path"]
        )
        return web.json_response(info)

    async def delete_file(self, request: web.Request) -> web.Response:
        project = self.project(request)
        await files.delete(self.ws.project_dir_of(project.id), request.match_info["path"])
        return web.json_response({})

    # -- /_local hooks -------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.ws.stats())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.ws.reset_stats()
        return web.json_response(self.ws.stats())

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.ws.faults.config.to_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        data = await _local_json(request)
        try:
            self.ws.set_faults(FaultConfig.from_json(data))
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(self.ws.faults.config.to_json())

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.ws.config.runtime_view())

    async def put_config(self, request: web.Request) -> web.Response:
        data = await _local_json(request)
        try:
            self.ws.update_config(**data)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(self.ws.config.runtime_view())

    async def list_app_info(self, request: web.Request) -> web.Response:
        return web.json_response({"apps": self.ws.apps_info()})


async def _local_json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data
