"""A tiny, fast, fake OpenAI-compatible upstream for tests and benchmarks.

Why it exists: to measure and test the *gateway* we need an upstream whose cost is close to zero
and whose failures can be produced on demand. A real model is slow and non-deterministic; a
Starlette app would spend more CPU than the gateway under test. So this is a raw asyncio Protocol
(on uvloop when available) that parses HTTP/1.1 with `httptools` and writes pre-shaped bytes.
It still speaks real HTTP/1.1 - keep-alive, Content-Length, chunked transfer for SSE - so httpx
and the official `openai` SDK talk to it unchanged.

Endpoints:

* `POST /v1/chat/completions` (and `/chat/completions`): deterministic echo completion, JSON or
  SSE (`stream: true`, honouring `stream_options.include_usage`).
* `GET /v1/models` (and `/models`): a model list.
* `GET /_control`: current mode, delay and per-mode request counters.
* Every chat-completion body received is kept (the last `REQUEST_LOG_SIZE`) in `.requests`, so
  tests can assert what a gateway actually forwarded (`last_request()` for the newest).
* `POST /_control` with `{"mode": ..., "delay_s": ..., "reset": bool}`: set the global fault mode.

Fault modes are picked per request by the body's `model` (e.g. `"fault-500"`, `"fault-slow-0.5"`)
or globally; a global mode other than `ok` wins, so a whole test can break the upstream at once.

Use it from async code with `FakeUpstream`, from synchronous tests with `run_in_thread()`, or from a
shell with `python -m lockgate.devtools.fake_upstream --port 9999`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools
import orjson

__all__ = [
    "FAULT_MODES",
    "FakeUpstream",
    "FakeUpstreamThread",
    "main",
    "parse_mode",
    "run_in_thread",
]

log = logging.getLogger(__name__)

FAULT_MODES: tuple[str, ...] = (
    "ok",
    "fault-500",
    "fault-429",
    "fault-400",
    "fault-hang",
    "fault-malformed",
    "fault-cut-stream",
    "fault-slow",
    "fault-slow-stream",
)
"""Every mode the fake understands; `fault-slow` and `fault-slow-stream` also accept a `-SECONDS` suffix."""

DEFAULT_DELAY_S = 2.0
MAX_CONTENT_CHARS = 200
STREAM_PIECES = 4
REQUEST_LOG_SIZE = 100
"""How many chat-completion request bodies `requests` keeps; bounded so benchmarks cannot grow it."""

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
_DONE_EVENT = b"data: [DONE]\n\n"
_BAD_EVENT = b"data: {not json\n\n"
_MALFORMED_BODY = b'{"id": "x", "choices": ['
_CHAT_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_MODEL_PATHS = frozenset({b"/v1/models", b"/models"})
_CONTROL_PATH = b"/_control"


def parse_mode(mode: str) -> tuple[str, float | None]:
    """Split a mode name into (base mode, delay override).

    The delay suffix exists so one model name in a release config ("fault-slow-0.5") says the whole
    fault, with no side channel. Only the slow modes take a suffix; anything unknown is a ValueError
    so a typo in a test fails loudly instead of silently behaving like `ok`.
    """
    if mode in FAULT_MODES:
        return mode, None
    for base in ("fault-slow-stream", "fault-slow"):
        prefix = base + "-"
        if mode.startswith(prefix):
            try:
                delay = float(mode[len(prefix) :])
            except ValueError:
                continue
            if delay < 0:
                raise ValueError(f"negative delay in fault mode {mode!r}")
            return base, delay
    known = ", ".join(FAULT_MODES)
    raise ValueError(f"unknown fault mode {mode!r}; known: {known} (slow modes accept -SECONDS)")


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


def _error_body(message: str, err_type: str, code: str | None) -> bytes:
    """OpenAI's error envelope, because the SDK and the gateway both parse exactly this shape."""
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}})


def _text_of(content: Any) -> str:
    """Text of a message `content`, which OpenAI allows as a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _count_tokens(text: str) -> int:
    """Whitespace word count: deterministic and cheap, which is all a fake's usage numbers need to be."""
    return len(text.split())


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


class FakeUpstream:
    """The fake server, run on the caller's event loop.

    State is a few plain attributes mutated atomically (tuple swap, Counter increment), so a
    synchronous test thread may call `set_mode` or read `counts` while the loop thread serves.
    """

    def __init__(self, *, mode: str = "ok", delay_s: float = DEFAULT_DELAY_S) -> None:
        base, override = parse_mode(mode)
        self._state: tuple[str, float] = (base, override if override is not None else float(delay_s))
        self._counts: Counter[str] = Counter()
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._seq = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and start serving; `port=0` picks a free port, read it back from `.port`."""
        if self._server is not None:
            raise RuntimeError("FakeUpstream already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self._host = host
        self._port = int(sockname[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection, including ones parked in `fault-hang`."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            conn.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)

    async def __aenter__(self) -> FakeUpstream:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- public state ----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """What to give an OpenAI client or a gateway backend config: includes the `/v1` prefix."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/v1"

    @property
    def mode(self) -> str:
        return self._state[0]

    @property
    def delay_s(self) -> float:
        return self._state[1]

    @property
    def counts(self) -> Counter[str]:
        """Snapshot of chat-completion requests received per effective mode (missing modes read 0).

        Counted on arrival, so retries show up even for `fault-hang`; the `-SECONDS` suffix of the
        slow modes is dropped from the key, and a model naming an unknown `fault-*` counts as "unknown".
        Only chat completions are counted, so model listings and control calls never skew asserts.
        """
        return Counter(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Set the global mode; `delay_s` (or a `-SECONDS` suffix) also sets the slow-mode delay."""
        base, override = parse_mode(mode)
        if override is not None:
            delay = override
        elif delay_s is not None:
            delay = float(delay_s)
        else:
            delay = self._state[1]
        if delay < 0:
            raise ValueError("delay_s must be >= 0")
        self._state = (base, delay)

    def reset_counts(self) -> None:
        self._counts.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of the last `REQUEST_LOG_SIZE` chat-completion bodies received, oldest first.

        Recorded on arrival as parsed JSON objects, whatever the mode, so a test can check what a
        gateway forwarded (parameters, system prompt) even when the answer was a fault.
        """
        return list(self._requests.copy())  # deque.copy() is atomic under the GIL; iteration is not

    def last_request(self) -> dict[str, Any] | None:
        """The newest chat-completion body received, or None before the first."""
        try:
            return self._requests[-1]
        except IndexError:
            return None

    def clear_requests(self) -> None:
        self._requests.clear()

    def control_snapshot(self) -> dict[str, Any]:
        """What `GET /_control` returns."""
        mode, delay = self._state
        return {"mode": mode, "delay_s": delay, "counts": dict(self._counts), "total": self.total}

    # -- routing -------------------------------------------------------------------------------

    def _dispatch(self, conn: _Connection, req: _Request) -> Coroutine[Any, Any, None] | None:
        """Answer `req`; return a coroutine only when the answer has to wait (slow/hang modes)."""
        path, method = req.path, req.method
        if path in _CHAT_PATHS:
            if method != b"POST":
                return self._method_not_allowed(conn, req, b"POST")
            return self._chat(conn, req)
        if path in _MODEL_PATHS:
            if method != b"GET":
                return self._method_not_allowed(conn, req, b"GET")
            self._models(conn, req)
            return None
        if path == _CONTROL_PATH:
            if method == b"GET":
                conn.send(200, orjson.dumps(self.control_snapshot()), req.keep_alive)
            elif method == b"POST":
                self._control(conn, req)
            else:
                return self._method_not_allowed(conn, req, b"GET, POST")
            return None
        message = f"Unknown path {path.decode(errors='replace')!r} on the fake upstream."
        conn.send(404, _error_body(message, "invalid_request_error", "unknown_url"), req.keep_alive)
        return None

    @staticmethod
    def _method_not_allowed(conn: _Connection, req: _Request, allow: bytes) -> None:
        body = _error_body(f"Method {req.method.decode()} not allowed.", "invalid_request_error", None)
        conn.send(405, body, req.keep_alive, extra=b"allow: " + allow + b"\r\n")

    def _models(self, conn: _Connection, req: _Request) -> None:
        names = ["fake-model", *FAULT_MODES[1:]]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "lockgate-fake"} for n in names]
        conn.send(200, orjson.dumps({"object": "list", "data": data}), req.keep_alive)

    def _control(self, conn: _Connection, req: _Request) -> None:
        try:
            payload = orjson.loads(req.body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("control body must be a JSON object")
            if payload.get("reset"):
                self.reset_counts()
            if "mode" in payload or "delay_s" in payload:
                delay = payload.get("delay_s")
                self.set_mode(str(payload.get("mode", self.mode)), None if delay is None else float(delay))
        except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            conn.send(400, _error_body(str(exc), "invalid_request_error", None), req.keep_alive)
            return
        conn.send(200, orjson.dumps(self.control_snapshot()), req.keep_alive)

    # -- chat completions -------------------------------------------------------------------

    def _chat(self, conn: _Connection, req: _Request) -> Coroutine[Any, Any, None] | None:
        try:
            body = orjson.loads(req.body)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            msg = f"Could not parse the request body as JSON: {exc}"
            conn.send(400, _error_body(msg, "invalid_request_error", None), req.keep_alive)
            return None
        self._requests.append(body)

        model = body.get("model")
        model = model if isinstance(model, str) and model else "fake-model"
        global_mode, delay = self._state
        if global_mode != "ok":
            mode = global_mode
        elif model.startswith("fault-"):
            try:
                mode, override = parse_mode(model)
            except ValueError as exc:
                self._counts["unknown"] += 1
                err = _error_body(str(exc), "invalid_request_error", "unknown_fault")
                conn.send(400, err, req.keep_alive)
                return None
            if override is not None:
                delay = override
        else:
            mode = "ok"
        self._counts[mode] += 1
        stream = body.get("stream") is True
        ka = req.keep_alive

        if mode == "fault-500":
            err = _error_body("The fake upstream failed (fault-500).", "server_error", "fake_500")
            conn.send(500, err, ka)
            return None
        if mode == "fault-429":
            msg = "Rate limit reached on the fake upstream (fault-429)."
            err = _error_body(msg, "requests", "rate_limit_exceeded")
            conn.send(429, err, ka, extra=b"retry-after: 1\r\n")
            return None
        if mode == "fault-400":
            msg = "The fake upstream rejected the request (fault-400)."
            err = _error_body(msg, "invalid_request_error", "fake_400")
            conn.send(400, err, ka)
            return None
        if mode == "fault-hang":
            return self._hang()
        if mode == "fault-malformed" and not stream:
            conn.send(200, _MALFORMED_BODY, ka)
            return None

        self._seq += 1
        completion_id = f"chatcmpl-fake{self._seq:010x}"
        created = int(time.time())
        content, prompt_tokens = self._answer(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _count_tokens(content),
            "total_tokens": prompt_tokens + _count_tokens(content),
        }

        if not stream:
            payload = orjson.dumps(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
            if mode == "fault-cut-stream":
                # Promise 500 bytes, deliver fewer, hang up: the client sees a truncated body.
                partial = payload[: min(len(payload), 499) // 2]
                conn.write(_head(200, _JSON, 500, b"", True) + partial)
                conn.close()
                return None
            if mode == "fault-slow":
                return self._later(delay, lambda: conn.send(200, payload, ka))
            conn.send(200, payload, ka)
            return None

        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        events = self._stream_events(completion_id, created, model, content, usage, include_usage)
        n_content = len(events) - (2 if include_usage else 1)  # events before the usage / [DONE] tail

        if mode == "fault-malformed":
            conn.write(_stream_head(ka) + _chunk(events[0]) + _chunk(_BAD_EVENT) + _chunk(_DONE_EVENT) + _CHUNK_END)
            conn.finish(ka)
            return None
        if mode == "fault-cut-stream":
            conn.write(_stream_head(ka) + _chunk(events[0]) + _chunk(events[1]))
            conn.close()
            return None
        if mode == "fault-slow-stream":
            return self._slow_stream(conn, events, n_content, delay, ka)
        whole = _stream_head(ka) + b"".join(_chunk(e) for e in events) + _CHUNK_END
        if mode == "fault-slow":

            def send_stream() -> None:
                conn.write(whole)
                conn.finish(ka)

            return self._later(delay, send_stream)
        conn.write(whole)
        conn.finish(ka)
        return None

    @staticmethod
    def _answer(body: dict[str, Any]) -> tuple[str, int]:
        """Deterministic content and prompt tokens.

        Content is "echo: " + the last user message, the whole string cut to 200 characters, so
        tests can assert on it and responses stay tiny however large the prompt.
        """
        messages = body.get("messages")
        if not isinstance(messages, list):
            messages = []
        last_user = ""
        prompt_tokens = 0
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            text = _text_of(msg.get("content"))
            prompt_tokens += _count_tokens(text)
            if msg.get("role") == "user":
                last_user = text
        return ("echo: " + last_user)[:MAX_CONTENT_CHARS], prompt_tokens

    @staticmethod
    def _stream_events(
        completion_id: str,
        created: int,
        model: str,
        content: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> list[bytes]:
        """SSE events shaped like OpenAI's: role on the first chunk, finish_reason on the last, then
        (with include_usage) a chunk with empty choices and usage, then `[DONE]`.

        As OpenAI does, every chunk carries `"usage": null` when usage was requested.
        """
        step = max(1, -(-len(content) // STREAM_PIECES))
        pieces = [content[i : i + step] for i in range(0, len(content), step)] or [""]

        def event(choices: list[dict[str, Any]], usage_value: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage_value
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        def choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        events = [event(choice({"role": "assistant", "content": pieces[0]}, None))]
        events += [event(choice({"content": p}, None)) for p in pieces[1:]]
        events.append(event(choice({}, "stop")))
        if include_usage:
            events.append(event([], usage))
        events.append(_DONE_EVENT)
        return events

    @staticmethod
    async def _hang() -> None:
        """Never answer; the connection's task is cancelled when the client goes away or on stop()."""
        await asyncio.get_running_loop().create_future()

    @staticmethod
    async def _later(delay: float, action: Callable[[], object]) -> None:
        await asyncio.sleep(delay)
        action()

    @staticmethod
    async def _slow_stream(
        conn: _Connection, events: list[bytes], n_content: int, delay: float, keep_alive: bool
    ) -> None:
        """First chunk at once, then `delay` before each further content/finish chunk; the usage
        chunk and `[DONE]` follow the finish chunk immediately (they are bookkeeping, not tokens)."""
        conn.write(_stream_head(keep_alive) + _chunk(events[0]))
        for i in range(1, n_content):
            await asyncio.sleep(delay)
            conn.write(_chunk(events[i]))
        conn.write(b"".join(_chunk(e) for e in events[n_content:]) + _CHUNK_END)
        conn.finish(keep_alive)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it roughly doubles throughput), plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class FakeUpstreamThread:
    """A `FakeUpstream` on its own event loop in a daemon thread, for synchronous tests.

    The fake must not share the test's thread, or a blocking client call would deadlock against it.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, mode: str = "ok", delay_s: float = DEFAULT_DELAY_S
    ) -> None:
        self.upstream = FakeUpstream(mode=mode, delay_s=delay_s)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> FakeUpstreamThread:
        """Start the thread and block until the port is bound (or re-raise why it could not be)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._main, name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _main(self) -> None:
        loop = _new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.upstream.start(self._host, self._port))
            except BaseException as exc:  # surfaced to start() in the calling thread
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.upstream.stop())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call more than once."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> FakeUpstreamThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self.upstream.host

    @property
    def port(self) -> int:
        return self.upstream.port

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def counts(self) -> Counter[str]:
        return self.upstream.counts

    @property
    def mode(self) -> str:
        return self.upstream.mode

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        self.upstream.set_mode(mode, delay_s)

    def reset_counts(self) -> None:
        self.upstream.reset_counts()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.upstream.requests

    def last_request(self) -> dict[str, Any] | None:
        return self.upstream.last_request()

    def clear_requests(self) -> None:
        self.upstream.clear_requests()


def run_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, mode: str = "ok", delay_s: float = DEFAULT_DELAY_S
) -> FakeUpstreamThread:
    """Start a fake upstream in a background thread; use the result as a context manager or call `.stop()`."""
    return FakeUpstreamThread(host, port, mode=mode, delay_s=delay_s).start()


async def _serve(host: str, port: int, mode: str, delay_s: float) -> None:
    upstream = FakeUpstream(mode=mode, delay_s=delay_s)
    await upstream.start(host, port)
    print(f"listening on http://{host}:{upstream.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry: serve until SIGINT/SIGTERM. One process, one loop - the fake is never the bottleneck."""
    parser = argparse.ArgumentParser(
        prog="python -m lockgate.devtools.fake_upstream",
        description="Serve a fake OpenAI-compatible upstream with switchable fault modes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999, help="0 picks a free port (printed on start)")
    parser.add_argument("--workers", type=int, default=1, help="only 1 is supported")
    parser.add_argument("--mode", default="ok", help=f"initial global mode: {', '.join(FAULT_MODES)}")
    parser.add_argument("--delay-s", type=float, default=DEFAULT_DELAY_S, help="delay for the slow modes")
    args = parser.parse_args(argv)
    if args.workers != 1:
        parser.error("--workers: only 1 is supported")
    try:
        parse_mode(args.mode)
    except ValueError as exc:
        parser.error(str(exc))
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(_serve(args.host, args.port, args.mode, args.delay_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
