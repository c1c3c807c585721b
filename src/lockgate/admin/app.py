"""The admin API application: FastAPI, mounted by the gateway at /admin.

FastAPI rather than plain Starlette because the OpenAPI document at /admin/openapi.json is generated
from the typed handlers, so it cannot drift from what the API does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockgate import __version__
from lockgate.admin import audit, evidence, keys, releases, routes, traces
from lockgate.admin.deps import AdminContext, RoleRequirement
from lockgate.auth.roles import ROLE_DUTIES, Role
from lockgate.errors import LockgateError, PayloadTooLarge, ServiceUnavailable
from lockgate.gateway.runtime import Runtime
from lockgate.store import StoreUnavailable

log = logging.getLogger(__name__)

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
    app.state.methods = []
    for router in routers:
        _document_roles(router)
        app.include_router(router, prefix=API_PREFIX)
        app.state.methods += [(compile_path(API_PREFIX + r.path)[0], r.methods) for r in router.routes
                              if isinstance(r, APIRoute)]
    app.add_exception_handler(LockgateError, _lockgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
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


# -- errors: the data plane's body, with messages that say what to fix ----------------------------


def _respond(err: LockgateError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers or None)


async def _lockgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LockgateError)
    return _respond(exc)


class InvalidInput(LockgateError):
    status = 422
    error_type = "invalid_request_error"
    code = "invalid_input"


_PLACES = {"body": "body", "query": "query parameter", "path": "path parameter", "header": "header"}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    if request.method in ("POST", "PUT", "PATCH") and "json" not in content_type:
        shown = f"'{content_type}'" if content_type else "none"
        return _respond(InvalidInput(
            f"The request body must be JSON, sent with `Content-Type: application/json` (the Content-Type was "
            f"{shown}). With curl: -H 'Content-Type: application/json' -d '{{...}}'."
        ))
    problems, first_param = [], None
    for error in exc.errors()[:10]:
        if error.get("type") == "json_invalid":
            position, reason = error.get("loc", ("", "?"))[-1], (error.get("ctx") or {}).get("error", "")
            return _respond(InvalidInput(f"The request body is not valid JSON ({reason} at character {position})."))
        loc = [str(part) for part in error.get("loc", ())]
        place = _PLACES.get(loc[0], loc[0]) if loc else "request"
        field = ".".join(loc[1:])
        first_param = first_param or field or None
        msg = str(error.get("msg", "")).removeprefix("Value error, ")  # our validators' messages stand alone
        problems.append(f"{place} {field}: {msg}" if field else f"{place}: {msg}")
    message = "Invalid request: " + "; ".join(problems) + ". See /admin/openapi.json for the expected shape."
    return _respond(InvalidInput(message, param=first_param))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        err = LockgateError(f"No such admin endpoint: {request.method} {path}. Every endpoint is listed in "
                            "/admin/openapi.json.")
        err.error_type, err.code = "invalid_request_error", "not_found"
    elif exc.status_code == 405:
        err = LockgateError(f"{request.method} is not allowed on {path}; /admin/openapi.json lists the methods.")
        err.error_type, err.code = "invalid_request_error", "method_not_allowed"
    else:
        err = LockgateError(str(exc.detail))
        err.error_type, err.code = "invalid_request_error", None
    err.status = exc.status_code
    err.headers = dict(exc.headers or {})
    if exc.status_code == 405:
        err.headers["Allow"] = ", ".join(_allowed_methods(request))
    return _respond(err)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path takes: Starlette's own `Allow` names only the first route that matched it."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    return sorted({m for regex, methods in request.app.state.methods if regex.match(path) for m in methods})


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return _respond(ServiceUnavailable(f"The database is unavailable right now ({exc}). Retry in a few seconds."))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _respond(LockgateError("The admin API hit an internal error. Retry; if it persists, check the "
                                  "gateway's logs."))


class BodyLimit:
    """Refuses bodies over `max_bytes` before FastAPI reads them (it reads before authenticating)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await _send_too_large(self.max_bytes, send)
                return
            await self.app(scope, receive, send)
            return
        # No length declared (chunked): read it here, up to the limit, and hand it on whole.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _send_too_large(self.max_bytes, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}]), send)


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the admin API's limit of {max_bytes} bytes.")


async def _send_too_large(max_bytes: int, send: Send) -> None:
    err = _too_large(max_bytes)
    response = JSONResponse(err.body(), status_code=err.status)
    await response({"type": "http"}, _no_receive, send)  # type: ignore[arg-type]


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
