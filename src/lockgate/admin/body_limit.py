"""A limit on request bodies, applied before FastAPI reads them (it reads a body before it
authenticates the caller, so an anonymous client could otherwise make it buffer any size)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockgate.errors import PayloadTooLarge


class BodyLimit:
    """Answers 413 to a body over `max_bytes`, declared or (when chunked) counted."""

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
                await _send_too_large(self.max_bytes, scope, send)
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
                await _send_too_large(self.max_bytes, scope, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}]), send)


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


async def _send_too_large(max_bytes: int, scope: Scope, send: Send) -> None:
    err = PayloadTooLarge(f"The request body is larger than the admin API's limit of {max_bytes} bytes.")
    await JSONResponse(err.body(), status_code=err.status)(scope, _replay([]), send)
