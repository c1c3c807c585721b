"""Every admin API error as the data plane's body (OpenAI's), with a message that says what to fix."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lockgate.errors import LockgateError, ServiceUnavailable
from lockgate.store import StoreUnavailable

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LockgateError, _lockgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


def respond(err: LockgateError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers or None)


async def _lockgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LockgateError)
    return respond(exc)


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
        return respond(InvalidInput(
            f"The request body must be JSON, sent with `Content-Type: application/json` (the Content-Type was "
            f"{shown}). With curl: -H 'Content-Type: application/json' -d '{{...}}'."
        ))
    problems, first_param = [], None
    for error in exc.errors()[:10]:
        if error.get("type") == "json_invalid":
            position, reason = error.get("loc", ("", "?"))[-1], (error.get("ctx") or {}).get("error", "")
            return respond(InvalidInput(f"The request body is not valid JSON ({reason} at character {position})."))
        loc = [str(part) for part in error.get("loc", ())]
        place = _PLACES.get(loc[0], loc[0]) if loc else "request"
        field = ".".join(loc[1:])
        first_param = first_param or field or None
        msg = str(error.get("msg", "")).removeprefix("Value error, ")  # our validators' messages stand alone
        problems.append(f"{place} {field}: {msg}" if field else f"{place}: {msg}")
    message = "Invalid request: " + "; ".join(problems) + ". See /admin/openapi.json for the expected shape."
    return respond(InvalidInput(message, param=first_param))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        err = LockgateError(f"No such admin endpoint: {request.method} {path}. Every endpoint is listed in "
                            "/admin/openapi.json.")
        err.error_type, err.code = "invalid_request_error", "not_found"
    elif exc.status_code == 405:
        err = LockgateError(f"{request.method} is not allowed on {path}; /admin/openapi.json lists the methods.",
                            headers={"Allow": ", ".join(_allowed_methods(request))})
        err.error_type, err.code = "invalid_request_error", "method_not_allowed"
    else:
        err = LockgateError(str(exc.detail), headers=dict(exc.headers or {}))
        err.error_type, err.code = "invalid_request_error", None
    err.status = exc.status_code
    return respond(err)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path takes: Starlette's own `Allow` names only the first route that matched it.
    `app.state.methods` holds (path regex, methods) for every route; lockgate.admin.app fills it."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    return sorted({m for regex, methods in request.app.state.methods if regex.match(path) for m in methods})


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return respond(ServiceUnavailable(f"The database is unavailable right now ({exc}). Retry in a few seconds."))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return respond(LockgateError(
        "The admin API hit an internal error. Retry; if it persists, check the gateway's logs."))
