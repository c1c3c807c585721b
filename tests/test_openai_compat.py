"""OpenAI compatibility, proven from the outside: real HTTP against a real `lockgate serve` process.

Clients only ever see Lockgate through OpenAI's wire format, so that format is the contract:
the official `openai` SDK must work unchanged, every body must validate against OpenAI's own
OpenAPI document, parameters must reach the backend, errors must have OpenAI's shape and the
status the SDK maps to the right exception class, and operators get their headers and metrics.

One gateway (five routes over the session's fake upstream) is shared by the whole module to keep
it fast. Tests that need a special key (restricted, rate limited, revoked) get one of their own,
created before the gateway starts: a running gateway only learns of new keys at its next refresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from lockgate.devtools.fake_upstream import FakeUpstreamThread
from tests import openapi_schemas
from tests.harness import Gateway, create_key, free_port, run_cli

SYSTEM_PROMPT = "You are a test."
ROUTES = ["broken", "cut", "echo", "other", "slow"]

# `echo` and `other` answer; `broken` fails (500, no retry, no fallback), `cut` breaks streams after
# their first chunks, `slow` never answers. The failing routes get backends of their own so their
# failures never open the circuit breaker behind `echo`, with thresholds high enough that repeated
# failures keep their status codes instead of turning into `circuit_open`.
CONFIG = """
version: 1
server:
  max_body_bytes: 65536
backends:
  up:
    kind: openai
    base_url: {url}
  up_broken:
    kind: openai
    base_url: {url}
    circuit:
      failure_threshold: 1000
  up_slow:
    kind: openai
    base_url: {url}
    circuit:
      failure_threshold: 1000
routes:
  echo:
    serve: v1
    releases:
      v1:
        backend: up
        model: ok
        system_prompt: {system_prompt}
  other:
    serve: v1
    releases:
      v1:
        backend: up
        model: ok
  broken:
    serve: v1
    releases:
      v1:
        backend: up_broken
        model: fault-500
        retry:
          max_attempts: 1
  cut:
    serve: v1
    releases:
      v1:
        backend: up_broken
        model: fault-cut-stream
        retry:
          max_attempts: 1
  slow:
    serve: v1
    releases:
      v1:
        backend: up_slow
        model: fault-hang
        timeouts:
          total_s: 1
          first_token_s: 0.5
"""


# Keys created before the gateway starts, by name: the `lockgate keys create` options of each.
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "only-echo": ("--routes", "echo"),
    "to-revoke": (),
    "slowpoke": ("--rpm", "2"),
}


@dataclass
class Lab:
    gateway: Gateway
    key: str
    data_dir: Path
    upstream: FakeUpstreamThread
    keys: dict[str, str]

    def sdk(self, key: str | None = None, **kwargs: Any) -> OpenAI:
        """The official client, unchanged; no retries so every error surfaces exactly once."""
        return OpenAI(base_url=self.gateway.api_url, api_key=key or self.key, max_retries=0, timeout=15, **kwargs)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstreamThread) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("openai-compat")
    config = root / "lockgate.yaml"
    config.write_text(CONFIG.format(url=upstream.base_url, system_prompt=SYSTEM_PROMPT))
    data_dir = root / "data"
    key = create_key(data_dir, "compat")
    keys = {name: create_key(data_dir, name, *options) for name, options in EXTRA_KEYS.items()}
    gateway = Gateway(data_dir=data_dir, config=config, port=free_port()).start()
    try:
        yield Lab(gateway, key, data_dir, upstream, keys)
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def http(lab: Lab) -> Iterator[httpx.Client]:
    """A raw HTTP client with the module's key, for what the SDK hides (headers, bytes, SSE)."""
    with httpx.Client(
        base_url=lab.gateway.base_url, headers={"authorization": f"Bearer {lab.key}"}, timeout=15
    ) as client:
        yield client


# -- helpers -------------------------------------------------------------------------------------

# An httpx response, or the one the SDK's errors carry (the SDK ships its own httpx fork, `httpx2`).
AnyResponse = Any


def chat(content: str = "hello", model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def sse_events(raw: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order; asserts the framing (one data line per event)."""
    assert raw.endswith("\n\n"), f"SSE body must end with a blank line: {raw[-80:]!r}"
    events = [e for e in raw.split("\n\n") if e.strip()]
    payloads = []
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, f"unexpected SSE event {event!r}"
        payloads.append(event[len("data: ") :])
    return payloads


def stream_chunks(http: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        raw = resp.read().decode()
    assert resp.status_code == 200, raw
    assert resp.headers["content-type"].startswith("text/event-stream")
    return resp, sse_events(raw)


def assert_lockgate_headers(resp: AnyResponse, release: str | None = None) -> None:
    """Every chat response names its request, its release and the time the gateway itself added."""
    assert resp.headers.get("x-request-id"), resp.headers
    assert resp.headers.get("x-lockgate-release"), resp.headers
    if release is not None:
        assert resp.headers["x-lockgate-release"] == release
    overhead = float(resp.headers["x-lockgate-overhead-ms"])
    assert math.isfinite(overhead) and overhead >= 0


def assert_openai_error(
    resp: AnyResponse,
    status: int,
    *,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error envelope, validated against `ErrorResponse`, with the expected status."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    openapi_schemas.validate("ErrorResponse", body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"].strip()
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


def assert_sdk_error(exc: openai.APIStatusError, status: int, **kwargs: Any) -> dict[str, Any]:
    error = assert_openai_error(exc.response, status, **kwargs)
    assert exc.status_code == status
    assert exc.message and error["message"] in exc.message  # the SDK surfaces the gateway's message
    return error


def upstream_request(lab: Lab, marker: str) -> dict[str, Any]:
    """The body the fake upstream received for the request whose user message contains `marker`."""
    found = [
        r
        for r in lab.upstream.requests
        if any(marker in str(m.get("content")) for m in r.get("messages", []) if isinstance(m, dict))
    ]
    assert len(found) == 1, f"expected one upstream request with {marker!r}, got {len(found)}"
    return found[0]


def metric_samples(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# == 1. The official SDK, unchanged ==============================================================


def test_sdk_non_stream(lab: Lab) -> None:
    """The plain `create` call an application makes returns a typed completion with real content."""
    reply = lab.sdk().chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}])
    assert reply.object == "chat.completion"
    assert reply.model == "echo"
    assert reply.id
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


def test_sdk_stream(lab: Lab) -> None:
    """Iterating a stream yields the answer piece by piece; the last chunk says why it stopped."""
    chunks = list(
        lab.sdk().chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "stream me please"}], stream=True
        )
    )
    assert len(chunks) >= 2
    assert {c.id for c in chunks} == {chunks[0].id}, "every chunk of one completion shares its id"
    assert all(c.object == "chat.completion.chunk" and c.model == "echo" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks), "usage only when stream_options asks for it"


def test_sdk_stream_include_usage(lab: Lab) -> None:
    """With `include_usage`, one extra chunk with empty choices carries the usage, as OpenAI sends it."""
    chunks = list(
        lab.sdk().chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "count my tokens"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.usage.total_tokens > 0 and last.usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: count my tokens"


@pytest.mark.parametrize("include_usage", [False, True])
def test_raw_sse_ends_with_done(http: httpx.Client, include_usage: bool) -> None:
    """On the wire: `data: <json>` events, the last one `data: [DONE]` (what non-SDK clients wait for)."""
    body = chat("raw bytes", stream=True, stream_options={"include_usage": include_usage})
    _, payloads = stream_chunks(http, body)
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert chunks[-1 if not include_usage else -2]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_sdk_models_list(lab: Lab) -> None:
    """`models.list()` lists the gateway's routes: they are the model names clients send."""
    models = list(lab.sdk().models.list())
    assert sorted(m.id for m in models) == ROUTES
    assert all(m.object == "model" and m.owned_by for m in models)


def test_sdk_models_list_restricted_key(lab: Lab) -> None:
    """A key limited to some routes sees only those: listing must not leak what it cannot call."""
    key = lab.keys["only-echo"]
    assert [m.id for m in lab.sdk(key).models.list()] == ["echo"]


def test_sdk_models_list_needs_a_key(lab: Lab) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        lab.sdk("lg-not-a-real-key").models.list()
    assert_sdk_error(caught.value, 401)


# == 2. Bodies validate against OpenAI's OpenAPI document ========================================

VALID_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "echo",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
VALID_CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "echo",
    "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}],
}
VALID_MODELS = {"object": "list", "data": [{"id": "echo", "object": "model", "created": 1, "owned_by": "lockgate"}]}
VALID_ERROR = {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}


def _broken(valid: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `valid` with one value replaced (or removed, for `...`)."""
    body = orjson.loads(orjson.dumps(valid))
    target = body
    for part in path[:-1]:
        target = target[part]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("schema", "valid"),
    [
        ("CreateChatCompletionResponse", VALID_COMPLETION),
        ("CreateChatCompletionStreamResponse", VALID_CHUNK),
        ("CreateChatCompletionStreamResponse", {**VALID_CHUNK, "choices": [], "usage": VALID_COMPLETION["usage"]}),
        ("CreateChatCompletionStreamResponse", {**VALID_CHUNK, "usage": None}),
        ("ListModelsResponse", VALID_MODELS),
        ("ErrorResponse", VALID_ERROR),
    ],
)
def test_schema_accepts_openai_shaped_bodies(schema: str, valid: dict[str, Any]) -> None:
    """The validator is not stricter than OpenAI: bodies as OpenAI itself sends them pass (nulls included)."""
    assert openapi_schemas.errors(schema, valid) == []


@pytest.mark.parametrize(
    ("schema", "broken"),
    [
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("choices",), ...)),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("object",), "chat.completion.chunk")),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("choices", 0, "finish_reason"), "eos")),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("choices", 0, "logprobs"), ...)),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("choices", 0, "message", "role"), "bot")),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("usage", "total_tokens"), "2")),
        ("CreateChatCompletionResponse", _broken(VALID_COMPLETION, ("created",), "yesterday")),
        ("CreateChatCompletionStreamResponse", _broken(VALID_CHUNK, ("choices", 0, "delta"), ...)),
        ("CreateChatCompletionStreamResponse", _broken(VALID_CHUNK, ("choices", 0, "finish_reason"), "done")),
        ("CreateChatCompletionStreamResponse", _broken(VALID_CHUNK, ("object",), "chat.completion")),
        ("CreateChatCompletionStreamResponse", _broken(VALID_CHUNK, ("usage",), {"total_tokens": "many"})),
        ("ListModelsResponse", _broken(VALID_MODELS, ("data", 0, "owned_by"), ...)),
        ("ListModelsResponse", _broken(VALID_MODELS, ("object",), "models")),
        ("ErrorResponse", {"message": "not wrapped in error", "type": "x", "param": None, "code": None}),
        ("ErrorResponse", _broken(VALID_ERROR, ("error", "param"), ...)),
        ("ErrorResponse", _broken(VALID_ERROR, ("error", "code"), 400)),
    ],
)
def test_schema_rejects_broken_bodies(schema: str, broken: dict[str, Any]) -> None:
    """The validation has teeth: one wrong or missing field is caught, so passing means something."""
    assert openapi_schemas.errors(schema, broken), f"{schema} accepted {broken!r}"
    with pytest.raises(AssertionError, match=schema):
        openapi_schemas.validate(schema, broken)


def test_completion_validates(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json=chat("validate me"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    openapi_schemas.validate("CreateChatCompletionResponse", resp.json())


@pytest.mark.parametrize("include_usage", [False, True])
def test_every_stream_chunk_validates(http: httpx.Client, include_usage: bool) -> None:
    _, payloads = stream_chunks(
        http, chat("validate my chunks", stream=True, stream_options={"include_usage": include_usage})
    )
    assert payloads[-1] == "[DONE]" and len(payloads) >= 3
    for payload in payloads[:-1]:
        openapi_schemas.validate("CreateChatCompletionStreamResponse", orjson.loads(payload))


def test_models_list_validates(http: httpx.Client) -> None:
    resp = http.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    openapi_schemas.validate("ListModelsResponse", body)
    assert sorted(m["id"] for m in body["data"]) == ROUTES


# (Every error body is validated against `ErrorResponse` by `assert_openai_error`, used in section 4.)


# == 3. Parameters reach the backend =============================================================

SAMPLING: dict[str, Any] = {
    "max_tokens": 7,
    "temperature": 0.3,
    "top_p": 0.9,
    "stop": ["END", "STOP"],
    "seed": 42,
    "user": "alice",
    "response_format": {"type": "json_object"},
}


@pytest.mark.parametrize("stream", [False, True])
def test_parameters_forwarded(lab: Lab, stream: bool) -> None:
    """What a client asks for is what the backend gets; the release's model replaces the route name."""
    marker = f"params-{stream}-{time.monotonic_ns()}"
    reply = lab.sdk().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": f"json please {marker}"}], stream=stream, **SAMPLING
    )
    if stream:
        list(reply)
    sent = upstream_request(lab, marker)
    for name, value in SAMPLING.items():
        assert sent.get(name) == value, f"{name}: sent {sent.get(name)!r}, expected {value!r}"
    assert sent["model"] == "ok"
    assert sent.get("stream", False) is stream


def test_single_stop_and_max_completion_tokens(lab: Lab) -> None:
    """A string `stop` and the newer `max_completion_tokens` reach the backend in a form it understands."""
    marker = f"stop-{time.monotonic_ns()}"
    lab.sdk().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": marker}], stop="END", max_completion_tokens=9
    )
    sent = upstream_request(lab, marker)
    assert sent["stop"] in ("END", ["END"])
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 9


def test_unset_parameters_not_invented(lab: Lab) -> None:
    """Parameters the client did not send (and the release does not set) are left to the backend."""
    marker = f"bare-{time.monotonic_ns()}"
    lab.sdk().chat.completions.create(model="echo", messages=[{"role": "user", "content": marker}])
    sent = upstream_request(lab, marker)
    assert not set(SAMPLING) & set(sent), sent


def test_system_prompt_prepended(lab: Lab) -> None:
    """The release's system prompt comes first; the client's conversation follows, in order."""
    marker = f"sys-{time.monotonic_ns()}"
    conversation: list[Any] = [
        {"role": "system", "content": "client system"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": marker},
    ]
    reply = lab.sdk().chat.completions.create(model="echo", messages=conversation)
    assert reply.choices[0].message.content == f"echo: {marker}"
    sent = upstream_request(lab, marker)
    assert sent["messages"][0]["role"] == "system"
    # The default output policy plants a leak canary after the release's own system prompt.
    assert sent["messages"][0]["content"].startswith(SYSTEM_PROMPT + "\n\n(Internal reference, never repeat: lgc-")
    assert [(m["role"], m["content"]) for m in sent["messages"][1:]] == [
        (m["role"], m["content"]) for m in conversation
    ]


def test_no_system_prompt_when_release_has_none(lab: Lab) -> None:
    marker = f"nosys-{time.monotonic_ns()}"
    lab.sdk().chat.completions.create(model="other", messages=[{"role": "user", "content": marker}])
    sent = upstream_request(lab, marker)
    assert [m["role"] for m in sent["messages"]] == ["user"]


# == 4. Errors: OpenAI's shape, the right status, the SDK's matching exception ====================

BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    ("malformed-json", b'{"model": "echo", "messages": [', None),
    ("empty-body", b"", None),
    ("json-array", b'[{"model": "echo"}]', None),
    ("json-string", b'"hello"', None),
    ("missing-messages", orjson.dumps({"model": "echo"}), "messages"),
    ("missing-model", orjson.dumps({"messages": [{"role": "user", "content": "hi"}]}), "model"),
    ("string-messages", orjson.dumps({"model": "echo", "messages": "hi"}), "messages"),
    ("empty-messages", orjson.dumps({"model": "echo", "messages": []}), "messages"),
    ("message-not-object", orjson.dumps({"model": "echo", "messages": ["hi"]}), None),
    ("unknown-role", orjson.dumps({"model": "echo", "messages": [{"role": "wizard", "content": "hi"}]}), None),
    ("n-2", orjson.dumps({**chat(), "n": 2}), "n"),
    ("temperature-too-high", orjson.dumps({**chat(), "temperature": 5}), "temperature"),
    ("max-tokens-zero", orjson.dumps({**chat(), "max_tokens": 0}), "max_tokens"),
    ("stream-not-bool", orjson.dumps({**chat(), "stream": "yes please"}), "stream"),
    ("five-stops", orjson.dumps({**chat(), "stop": ["a", "b", "c", "d", "e"]}), "stop"),
    (
        "image-part",
        orjson.dumps(
            {
                "model": "echo",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ],
            }
        ),
        "messages",
    ),
    ("non-utf8", b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
    ("lone-surrogate", b'{"model": "echo", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
    ("nul-bytes", b"\x00\x00\x00", None),
    ("nested-too-deep", b"[" * 5000 + b"]" * 5000, None),
    ("null-messages", orjson.dumps({"model": "echo", "messages": None}), "messages"),
    ("model-not-string", orjson.dumps({"model": 5, "messages": [{"role": "user", "content": "hi"}]}), "model"),
    ("content-number", orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": 7}]}), None),
    (
        "text-part-not-string",
        orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]}),
        "messages",
    ),
    # Beyond 64 bits: would crash re-encoding the body for the backend if it got that far.
    (
        "seed-beyond-64-bits",
        b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "seed": ' + str(2**70).encode() + b"}",
        "seed",
    ),
    ("unknown-response-format", orjson.dumps({**chat(), "response_format": {"type": "xml"}}), None),
    ("stream-options-not-object", orjson.dumps({**chat(), "stream": True, "stream_options": "yes"}), "stream_options"),
    # Strict types, as OpenAI's: a number sent as a string is the client's bug, not something to guess at.
    ("max-tokens-as-string", orjson.dumps({**chat(), "max_tokens": "10"}), "max_tokens"),
    ("stream-as-string", orjson.dumps({**chat(), "stream": "true"}), "stream"),
    (
        "text-part-without-text",
        orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        "messages",
    ),
]


@pytest.mark.parametrize(("body", "param"), [(b, p) for _, b, p in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES])
def test_bad_input_is_400_never_500(http: httpx.Client, body: bytes, param: str | None) -> None:
    """Whatever a client sends, a bad request is the client's 400 with a reason, not a gateway 500."""
    resp = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(resp, 400, error_type="invalid_request_error", param=param)
    assert error["code"]
    assert_lockgate_headers(resp)


def test_sdk_bad_request_classes(lab: Lab) -> None:
    """Each kind of bad input raises `BadRequestError` in the SDK, whatever route the client takes."""
    client = lab.sdk()
    with pytest.raises(openai.BadRequestError) as caught:  # malformed JSON
        client.post(
            "/chat/completions",
            cast_to=object,
            content=b'{"model": "echo",',
            options={"headers": {"content-type": "application/json"}},
        )
    assert_sdk_error(caught.value, 400, code="invalid_json")
    with pytest.raises(openai.BadRequestError) as caught:  # no `messages` at all
        client.post("/chat/completions", cast_to=object, body={"model": "echo"})
    assert_sdk_error(caught.value, 400, param="messages", code="missing_required_parameter")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], n=2)
    assert_sdk_error(caught.value, 400, param="n")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], temperature=9)
    assert_sdk_error(caught.value, 400, param="temperature")


def test_missing_key_401(lab: Lab) -> None:
    resp = httpx.post(lab.gateway.api_url + "/chat/completions", json=chat(), timeout=10)
    assert_openai_error(resp, 401, code="invalid_api_key")
    assert_lockgate_headers(resp, "none")
    resp = httpx.post(
        lab.gateway.api_url + "/chat/completions",
        json=chat(),
        timeout=10,
        headers={"authorization": f"Basic {lab.key}"},
    )
    assert_openai_error(resp, 401, code="invalid_api_key")


def test_wrong_key_401(lab: Lab) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        lab.sdk("lg-wrong").chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert_sdk_error(caught.value, 401, code="invalid_api_key")
    with pytest.raises(openai.AuthenticationError):  # a stream fails the same way before it starts
        lab.sdk("lg-wrong").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}], stream=True
        )


def test_revoked_key_401(lab: Lab) -> None:
    """`lockgate keys revoke` takes effect on a running gateway within its key refresh (2 s)."""
    key = lab.keys["to-revoke"]
    client = lab.sdk(key)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices
    run_cli("keys", "revoke", "to-revoke", data_dir=lab.data_dir)
    deadline = time.monotonic() + 6
    while True:
        try:
            client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
        except openai.AuthenticationError as exc:
            assert_sdk_error(exc, 401, code="invalid_api_key")
            break
        assert time.monotonic() < deadline, "a revoked key was still accepted after 6 s"
        time.sleep(0.2)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_route_not_allowed_403(lab: Lab) -> None:
    key = lab.keys["only-echo"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        lab.sdk(key).chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    assert_sdk_error(caught.value, 403, code="route_not_allowed", param="model")
    assert "echo" in caught.value.message  # says which routes the key may use
    assert lab.sdk(key).chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices


def test_unknown_route_404(lab: Lab) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        lab.sdk().chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    error = assert_sdk_error(caught.value, 404, code="model_not_found", param="model")
    assert "gpt-17" in error["message"] and "echo" in error["message"]


def test_unknown_endpoint_and_method(http: httpx.Client) -> None:
    """Paths and methods the gateway does not serve still answer in OpenAI's error shape."""
    assert_openai_error(http.post("/v1/embeddings", json={"input": "x"}), 404)
    assert_openai_error(http.get("/v1/chat/completions"), 405)


def test_body_too_large_413(lab: Lab, http: httpx.Client) -> None:
    """Over `server.max_body_bytes` is refused up front, whether or not the client declares a length."""
    with pytest.raises(openai.APIStatusError) as caught:
        lab.sdk().chat.completions.create(model="echo", messages=[{"role": "user", "content": "x" * 70_000}])
    assert type(caught.value) is openai.APIStatusError  # the SDK has no class of its own for 413
    assert_sdk_error(caught.value, 413, code="request_too_large")

    def chunked() -> Iterator[bytes]:  # no content-length: the limit must hold while reading
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}]}'

    resp = http.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert_openai_error(resp, 413, code="request_too_large")
    assert_lockgate_headers(resp)


def test_rate_limited_429(lab: Lab) -> None:
    """The third request of a 2-per-minute key is refused with a `retry-after` the SDK can honour."""
    client = lab.sdk(lab.keys["slowpoke"])
    for _ in range(2):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert_sdk_error(caught.value, 429, code="rate_limit_exceeded", error_type="rate_limit_error")
    retry_after = caught.value.response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert_lockgate_headers(caught.value.response, "echo@1")


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failure_502(lab: Lab, stream: bool) -> None:
    """A backend that fails (no fallback left) is the gateway's 502, an `InternalServerError` to the SDK."""
    with pytest.raises(openai.InternalServerError) as caught:
        reply = lab.sdk().chat.completions.create(
            model="broken", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        list(reply) if stream else None
    assert_sdk_error(caught.value, 502, code="upstream_error")
    assert_lockgate_headers(caught.value.response, "broken@1")


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_timeout_504(lab: Lab, stream: bool) -> None:
    """A backend that never answers is cut off at the release's timeout with a 504, not left hanging."""
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        reply = lab.sdk().chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        list(reply) if stream else None
    assert time.monotonic() - started < 5
    assert_sdk_error(caught.value, 504, code="upstream_timeout")
    assert_lockgate_headers(caught.value.response, "slow@1")


def test_mid_stream_failure_is_an_error_event(lab: Lab, http: httpx.Client) -> None:
    """After the first token the 200 is sent; a backend failure then ends the stream with an OpenAI
    error event and no `[DONE]`, so clients cannot mistake a cut answer for a whole one."""
    with http.stream("POST", "/v1/chat/completions", json=chat("cut me off", model="cut", stream=True)) as resp:
        raw = resp.read().decode()
    assert resp.status_code == 200
    assert_lockgate_headers(resp, "cut@1")
    payloads = sse_events(raw)
    assert "[DONE]" not in payloads
    *chunks, last = [orjson.loads(p) for p in payloads]
    assert chunks, "the chunks sent before the failure are delivered"
    for chunk in chunks:
        openapi_schemas.validate("CreateChatCompletionStreamResponse", chunk)
    openapi_schemas.validate("ErrorResponse", last)
    assert last["error"]["code"] == "stream_interrupted"

    with pytest.raises(openai.APIError) as caught:
        list(lab.sdk().chat.completions.create(model="cut", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert not isinstance(caught.value, openai.APIStatusError)  # the status was 200; the event is the error
    assert "mid-stream" in caught.value.message


# == 5. Operator headers on every chat response =================================================


def test_headers_on_success(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json=chat("headers"))
    assert resp.status_code == 200
    assert_lockgate_headers(resp, "echo@1")
    assert resp.headers["x-request-id"] in resp.json()["id"]  # one id, from headers to traces


def test_headers_on_stream(http: httpx.Client) -> None:
    resp, _ = stream_chunks(http, chat("headers", stream=True))
    assert_lockgate_headers(resp, "echo@1")
    assert resp.headers.get("cache-control") == "no-cache"


def test_headers_via_sdk_raw_response(lab: Lab) -> None:
    """SDK users can read the headers too (`with_raw_response`), e.g. to log the request id."""
    raw = lab.sdk().chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-lockgate-release"] == "echo@1"
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert_lockgate_headers(raw.http_response, "echo@1")


@pytest.mark.parametrize("stream", [False, True])
def test_client_request_id_echoed(http: httpx.Client, stream: bool) -> None:
    """A caller's own `x-request-id` is kept, so its logs and the gateway's line up."""
    rid = f"client-trace-{stream}-{time.monotonic_ns()}"
    body = chat("trace me", stream=stream)
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-request-id": rid}) as resp:
        resp.read()
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == rid
    assert_lockgate_headers(resp, "echo@1")


def test_client_request_id_echoed_on_errors(http: httpx.Client) -> None:
    for body, status in ((b"{oops", 400), (orjson.dumps(chat(model="nope")), 404)):
        rid = f"err-trace-{status}"
        resp = http.post(
            "/v1/chat/completions", content=body, headers={"x-request-id": rid, "content-type": "application/json"}
        )
        assert_openai_error(resp, status)
        assert resp.headers["x-request-id"] == rid
        assert_lockgate_headers(resp, "none")


def test_unusable_client_request_id_replaced(http: httpx.Client) -> None:
    """An over-long id is not trusted (it would end up in logs and traces); a fresh one is minted."""
    resp = http.post("/v1/chat/completions", json=chat(), headers={"x-request-id": "x" * 500})
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] and resp.headers["x-request-id"] != "x" * 500


def test_request_ids_are_unique(http: httpx.Client) -> None:
    ids = {http.post("/v1/chat/completions", json=chat()).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# == 6. Health, readiness, metrics ===============================================================


def test_healthz(http: httpx.Client) -> None:
    resp = http.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_readyz(http: httpx.Client) -> None:
    resp = http.get("/readyz")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["ready"] is True


def test_metrics_count_requests(http: httpx.Client) -> None:
    """Each request moves the per-route, per-release counters that dashboards and alerts read."""
    labels = {"route": "echo", "release": "echo@1"}
    before = metric_samples(http)
    assert http.post("/v1/chat/completions", json=chat("metrics one two three")).status_code == 200
    after = metric_samples(http)

    def delta(name: str, **extra: str) -> float:
        return sample(after, name, **labels, **extra) - sample(before, name, **labels, **extra)

    assert delta("lockgate_requests_total", outcome="ok") == 1
    assert delta("lockgate_request_duration_seconds_count") == 1
    assert delta("lockgate_upstream_duration_seconds_count") == 1
    assert delta("lockgate_tokens_total", kind="prompt") > 0
    assert delta("lockgate_tokens_total", kind="completion") > 0
    assert sample(after, "lockgate_request_duration_seconds_sum", **labels) > 0


def test_metrics_count_errors(http: httpx.Client) -> None:
    """Failures are counted under their outcome, and client-invented model names never become labels."""
    before = metric_samples(http)
    http.post("/v1/chat/completions", json=chat(model="invented-by-client"))
    after = metric_samples(http)
    assert not any(dict(labels).get("route") == "invented-by-client" for _, labels in after)
    key = {"route": "unknown", "release": "none", "outcome": "unknown_route"}
    assert sample(after, "lockgate_requests_total", **key) - sample(before, "lockgate_requests_total", **key) == 1


def test_non_chat_responses_carry_the_gateway_headers(http: httpx.Client) -> None:
    """Model lists, health and unknown paths name their request too, so any response can be quoted."""
    for resp in (http.get("/v1/models"), http.get("/healthz"), http.get("/v1/nowhere")):
        assert_lockgate_headers(resp, release="none")
    echoed = http.get("/v1/models", headers={"x-request-id": "mine-42"})
    assert echoed.headers["x-request-id"] == "mine-42"
