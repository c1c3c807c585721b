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

from .cli import main
from .modes import DEFAULT_DELAY_S as DEFAULT_DELAY_S
from .modes import FAULT_MODES, parse_mode
from .modes import MAX_CONTENT_CHARS as MAX_CONTENT_CHARS
from .modes import STREAM_PIECES as STREAM_PIECES
from .server import REQUEST_LOG_SIZE as REQUEST_LOG_SIZE
from .server import FakeUpstream
from .threaded import FakeUpstreamThread, run_in_thread

__all__ = [
    "FAULT_MODES",
    "FakeUpstream",
    "FakeUpstreamThread",
    "main",
    "parse_mode",
    "run_in_thread",
]
