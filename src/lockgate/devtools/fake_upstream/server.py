"""`FakeUpstream`: what the fake answers - routing, the control endpoint, fault dispatch, the request log.

Why it exists: this is the fake's behaviour as tests see it (modes, counters, recorded bodies),
on top of the connection plumbing in `protocol` and the bytes shaped in `modes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from .modes import (
    _BAD_EVENT,
    _DONE_EVENT,
    _MALFORMED_BODY,
    DEFAULT_DELAY_S,
    FAULT_MODES,
    LEAKED_ANSWER,
    _answer,
    _completion_body,
    _count_tokens,
    _error_body,
    _stream_events,
    parse_mode,
)
from .protocol import _CHUNK_END, _JSON, _chunk, _Connection, _head, _Request, _stream_head

REQUEST_LOG_SIZE = 100
"""How many chat-completion request bodies `requests` keeps; bounded so benchmarks cannot grow it."""

_CHAT_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_MODEL_PATHS = frozenset({b"/v1/models", b"/models"})
_CONTROL_PATH = b"/_control"


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
        content, prompt_tokens = _answer(body)
        if mode == "fault-leak":
            content = LEAKED_ANSWER
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _count_tokens(content),
            "total_tokens": prompt_tokens + _count_tokens(content),
        }

        if not stream:
            payload = _completion_body(completion_id, created, model, content, usage)
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
        events = _stream_events(completion_id, created, model, content, usage, include_usage)
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
