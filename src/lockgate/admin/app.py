"""The admin API application: FastAPI, mounted by the gateway at /admin.

FastAPI rather than plain Starlette because the OpenAPI document at /admin/openapi.json is generated
from the typed handlers, so it cannot drift from what the API does.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from lockgate import __version__
from lockgate.admin import audit, evidence, keys, releases, rollouts, routes, traces
from lockgate.admin.body_limit import BodyLimit
from lockgate.admin.deps import AdminContext, RoleRequirement
from lockgate.admin.errors import install_error_handlers
from lockgate.auth.roles import ROLE_DUTIES, Role
from lockgate.gateway.runtime import Runtime

API_PREFIX = "/v1"
MAX_BODY_BYTES = 1_048_576

# One router per resource. A new resource is a new module with its own `router`, added here.
ROUTERS: tuple[APIRouter, ...] = (
    routes.router,
    releases.router,
    evidence.router,
    audit.router,
    traces.router,
    keys.router,
    rollouts.router,
)

DESCRIPTION = """The control plane of a Lockgate gateway.

Every call needs `Authorization: Bearer <key>` with a key of a governance role; each operation
names the lowest role it needs (`x-lockgate-role`). Roles, each allowed what the ones before it are:

""" + "\n".join(f"- `{role.value}`: {duty}" for role, duty in ROLE_DUTIES.items() if role.is_governance) + """

Create the first admin key on the gateway's machine: `lockgate keys create --name NAME --role admin`.
Errors have the data plane's body: `{"error": {"message", "type", "param", "code"}}`.
Every change is appended to the hash-chained audit log (`GET /v1/audit`).
"""


def create_admin_app(runtime: Runtime, *, routers: Iterable[APIRouter] = ROUTERS) -> FastAPI:
    app = FastAPI(
        title="Lockgate admin API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.admin = AdminContext(runtime)
    app.state.methods = []  # (path regex, methods) of every route, for the `Allow` header of a 405
    for router in routers:
        _document_roles(router)
        app.include_router(router, prefix=API_PREFIX)
        app.state.methods += [(compile_path(API_PREFIX + r.path)[0], r.methods) for r in router.routes
                              if isinstance(r, APIRoute)]
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    return app


def _document_roles(router: APIRouter) -> None:
    """Each operation says which role it needs, read from its RoleRequirement dependency."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or "x-lockgate-role" in (route.openapi_extra or {}):
            continue  # routers are module-level: a second app must not document them twice
        role = _required_role(route.dependant)
        if role is None:
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-lockgate-role": role.value}
        note = f"Requires role `{role.value}` or higher."
        route.description = f"{route.description}\n\n{note}" if route.description else note


def _required_role(dependant: Dependant) -> Role | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleRequirement):
            return dep.call.role
        found = _required_role(dep)
        if found is not None:
            return found
    return None
