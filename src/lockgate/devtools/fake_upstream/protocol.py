"""The raw HTTP/1.1 side of the fake: one asyncio Protocol per connection, parsed by `httptools`.

Why it exists: a framework would cost more CPU than the gateway under test, so the fake speaks HTTP
itself - parsing, keep-alive, in-order answers, Content-Length and chunked writes - and this module
keeps that plumbing away from what the fake answers (`server`, `modes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools

from .modes import _error_body

if TYPE_CHECKING:
    from .server import FakeUpstream

log = logging.getLogger(__package__)

_REASONS: dict[int, bytes] = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
}
_SERVER_HEADER = b"server: lockgate-fake-upstream\r\n"
_JSON = b"application/json"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n" + _SERVER_HEADER + b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
)
_CHUNK_END = b"0\r\n\r\n"


def _head(status: int, content_type: bytes, length: int, extra: bytes, keep_alive: bool) -> bytes:
    """Status line and headers for a Content-Length response; `extra` is pre-formatted header lines."""
    return b"HTTP/1.1 %d %s\r\n%scontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n" % (
        status,
        _REASONS.get(status, b"Unknown"),
        _SERVER_HEADER,
        content_type,
        length,
        extra,
        b"" if keep_alive else b"connection: close\r\n",
    )


def _stream_head(keep_alive: bool) -> bytes:
    """Headers that open an SSE response (terminated by the blank line)."""
    return _STREAM_HEAD + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n"


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunked-transfer chunk; each SSE event goes out as exactly one chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Request:
    """One fully received request; only what the routes need is kept, to stay cheap."""

    __slots__ = ("method", "path", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.keep_alive = keep_alive


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers them strictly in order.

    Most answers are written synchronously from the parser callback, with no task or future,
    which is what makes thousands of requests per second cheap. Only modes that must wait
    (slow, hang, slow streams) spawn a task; requests that arrive meanwhile (pipelining) queue
    behind it so responses never interleave.
    """

    def __init__(self, upstream: FakeUpstream) -> None:
        self._upstream = upstream
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._expect_continue = False
        self._queue: deque[_Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport API without subclassing it, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self._upstream._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # Cancelling the in-flight task is how `fault-hang` ends "until the client disconnects".
        self.closed = True
        self._upstream._connections.discard(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(b"upgrades are not supported")
        except httptools.HttpParserError:
            self._reject(b"malformed HTTP request")

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        # Some clients wait for this before sending a body; answering it keeps them fast.
        if self._expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0]
        request = _Request(self._parser.get_method(), path, b"".join(self._body), self._parser.should_keep_alive())
        self._body = []
        self._queue.append(request)
        if self._task is None:
            self._drain()

    # -- request sequencing ------------------------------------------------------------------

    def _drain(self) -> None:
        """Answer queued requests in order until one needs to wait, then hand over to a task."""
        while self._queue and not self.closed:
            request = self._queue.popleft()
            pending = self._upstream._dispatch(self, request)
            if pending is not None:
                self._task = asyncio.get_running_loop().create_task(self._run(pending))
                return

    async def _run(self, pending: Coroutine[Any, Any, None]) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not wedge the connection silently
            log.exception("fake upstream handler failed")
            self.abort()
            return
        self._task = None
        if not self.closed:
            self._drain()

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    def finish(self, keep_alive: bool) -> None:
        """End a response; without keep-alive the connection closes after buffered bytes flush."""
        if not keep_alive:
            self.close()

    def close(self) -> None:
        """Close gracefully (FIN after the write buffer drains): used for `connection: close` and cuts."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def send(
        self,
        status: int,
        body: bytes,
        keep_alive: bool,
        content_type: bytes = _JSON,
        extra: bytes = b"",
    ) -> None:
        """Write one whole Content-Length response in a single write."""
        self.write(_head(status, content_type, len(body), extra, keep_alive) + body)
        self.finish(keep_alive)

    def _reject(self, message: bytes) -> None:
        body = _error_body(message.decode(), "invalid_request_error", "bad_http")
        self.send(400, body, keep_alive=False)
