"""The ASGI application: HTTP routes over one `Runtime`."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from lockgate.admin import create_admin_app
from lockgate.auth.roles import require_data_plane_key
from lockgate.errors import AuthenticationFailed, LockgateError, NotFound
from lockgate.gateway.chat import handle_chat
from lockgate.gateway.feedback import handle_feedback
from lockgate.gateway.headers import GatewayHeaders
from lockgate.gateway.responses import models_body
from lockgate.gateway.runtime import Runtime, load_settings_config, open_store
from lockgate.observe import metrics
from lockgate.settings import Settings

log = logging.getLogger(__name__)
JSON = "application/json"


def create_app(runtime: Runtime) -> Starlette:
    started_at = int(time.time())
    admin = create_admin_app(runtime)

    async def chat_completions(request: Request) -> Response:
        return await handle_chat(request, runtime)

    async def feedback(request: Request) -> Response:
        return await handle_feedback(request, runtime)

    async def list_models(request: Request) -> Response:
        routes = sorted(runtime.config.routes)
        if runtime.config.server.require_api_key:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            key = runtime.keys.lookup(token.strip()) if scheme.lower() == "bearer" else None
            if key is None:
                raise AuthenticationFailed(
                    "Missing or incorrect API key. Send `Authorization: Bearer <key>`; create a key with "
                    "`lockgate keys create --name NAME`."
                )
            require_data_plane_key(key.role)
            if key.routes is not None:
                routes = [r for r in routes if r in key.routes]
        return Response(orjson.dumps(models_body(routes, started_at)), media_type=JSON)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render(runtime.metric_collectors)
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def readyz(request: Request) -> Response:
        report = runtime.readiness()
        return Response(orjson.dumps(report), status_code=200 if report["ready"] else 503, media_type=JSON)

    async def lockgate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LockgateError)
        return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=JSON, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            err: LockgateError = NotFound(
                f"No such endpoint: {request.method} {request.url.path}. The API lives under /v1/ "
                "(e.g. POST /v1/chat/completions)."
            )
        else:
            err = LockgateError(f"{request.method} is not allowed on {request.url.path}.")
            err.status, err.error_type, err.code = exc.status_code, "invalid_request_error", "method_not_allowed"
        return Response(orjson.dumps(err.body()), status_code=err.status, media_type=JSON)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        # Logged in full for operators; the client gets a clean OpenAI-shaped 500 and nothing internal.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        err = LockgateError("The gateway hit an internal error. Retry; if it persists, check the gateway's logs.")
        return Response(orjson.dumps(err.body()), status_code=500, media_type=JSON)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            admin.state.admin.close()
            await runtime.stop()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Mount("/admin", app=admin),  # its own error handling and OpenAPI document: lockgate.admin
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(GatewayHeaders)],
        lifespan=lifespan,
        exception_handlers={
            LockgateError: lockgate_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.runtime = runtime
    return app


def create_app_from_env() -> Starlette:
    """Factory for worker processes: everything comes from `LOCKGATE_*` set by `lockgate serve`."""
    from lockgate.cli.logging_setup import configure_logging

    configure_logging()
    settings = Settings.from_env()
    config = load_settings_config(settings)
    workers = int(os.environ.get("LOCKGATE_WORKERS", "1"))
    # Workers of a supervisor never run the rollout controller: the supervisor does, once.
    return create_app(Runtime(settings, config, open_store(settings), workers=workers, run_controller=workers == 1))
