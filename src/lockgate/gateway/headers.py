"""The headers every gateway response carries: `x-request-id`, `x-lockgate-release`, `x-lockgate-overhead-ms`.

The chat handler sets them itself (it knows the release and how long the backend took); this thin
ASGI middleware fills them in on every other response (model list, health, 404s, ...), so a client
or a log line can always quote a request id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_REQUEST_ID_CHARS = 128


def request_id_from(headers: Mapping[str, str]) -> str:
    """A client's own id is kept when it is sane, so its logs and ours can be joined."""
    supplied = headers.get("x-request-id")
    return supplied if supplied is not None and is_sane_request_id(supplied) else new_request_id()


def is_sane_request_id(value: str) -> bool:
    """What a request id may be: short printable ASCII, so it is safe in logs, headers and labels."""
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isascii() and value.isprintable()


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class GatewayHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(name == b"x-request-id" for name, _ in headers):
                    supplied = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                                if k == b"x-request-id"}
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    headers += [
                        (b"x-request-id", request_id_from(supplied).encode()),
                        (b"x-lockgate-release", b"none"),
                        (b"x-lockgate-overhead-ms", f"{elapsed_ms:.3f}".encode()),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
