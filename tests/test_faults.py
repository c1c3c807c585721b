"""Upstream faults, end to end: a real `lockgate serve` over real HTTP in front of the fake upstream,
whose fault mode each release picks through its `model` (fault-500, fault-hang, ...).

Each test checks what the client sees (status, body shape, stream events) and what the trace says
happened (attempts, retries, served_by, fallback_used, outcome, status).

Most scenarios share one gateway: one route per scenario. Every backend there gets a very high
circuit-breaker threshold so failures in one test cannot open a circuit under another; the circuit
breaker itself is tested on a gateway of its own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from lockgate.devtools.fake_upstream import FakeUpstreamThread
from tests.harness import Gateway, create_key, free_port, write_config

STATIC = "The assistant is unavailable right now; please try again in a minute."
FAST_RETRY = {"backoff_initial_s": 0.02, "backoff_max_s": 0.05}
SHORT = {"total_s": 1, "first_token_s": 0.5}
NO_TRIP = {"failure_threshold": 1000}


def _route(backend: str, model: str, *, attempts: int = 2, fallbacks: list[dict[str, str]] | None = None,
           timeouts: dict[str, float] | None = None, retry: dict[str, float] | None = None) -> dict[str, Any]:
    release: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "retry": {"max_attempts": attempts, **(retry or FAST_RETRY)},
        "timeouts": timeouts or {"total_s": 5, "first_token_s": 2},
    }
    if fallbacks:
        release["fallbacks"] = fallbacks
    return {"serve": "v1", "releases": {"v1": release}}


TO_UP2 = [{"backend": "up2", "model": "ok"}]
TO_STATIC = [{"static": STATIC}]

ROUTES: dict[str, dict[str, Any]] = {
    "refused": _route("dead", "ok", attempts=3),
    "refused-static": _route("dead", "ok", attempts=2, fallbacks=TO_STATIC),
    "hang": _route("up", "fault-hang", timeouts=SHORT),
    "hang-static": _route("up", "fault-hang", timeouts=SHORT, fallbacks=TO_STATIC),
    "e500": _route("up", "fault-500", attempts=2, fallbacks=TO_UP2),
    "e429": _route("up", "fault-429", attempts=3, retry={"backoff_initial_s": 0.1, "backoff_max_s": 1, "jitter": 0.5}),
    "e400": _route("up", "fault-400", attempts=3, fallbacks=TO_UP2),
    "e400-alone": _route("up", "fault-400", attempts=3),
    "malformed": _route("up", "fault-malformed", attempts=2, fallbacks=TO_UP2),
    "malformed-alone": _route("up", "fault-malformed", attempts=2),
    "cut": _route("up", "fault-cut-stream", attempts=2, fallbacks=TO_UP2),
    "slow": _route("up", "fault-slow-0.3", timeouts={"total_s": 2, "first_token_s": 1}),
    "slow-stream": _route("up", "fault-slow-stream-0.4", timeouts={"total_s": 1, "first_token_s": 0.8},
                          fallbacks=TO_STATIC),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstreamThread) -> Iterator[tuple[Gateway, str]]:
    """One gateway for every scenario that does not need a breaker of its own."""
    tmp = tmp_path_factory.mktemp("faults")
    nobody = f"http://127.0.0.1:{free_port()}/v1"  # a port nobody listens on: connection refused
    config = {
        "version": 1,
        "tracing": {"flush_interval_s": 0.05},
        "backends": {
            "up": {"kind": "openai", "base_url": upstream.base_url, "circuit": NO_TRIP},
            "up2": {"kind": "openai", "base_url": upstream.base_url, "circuit": NO_TRIP},
            "dead": {"kind": "openai", "base_url": nobody, "circuit": NO_TRIP},
        },
        "routes": ROUTES,
    }
    path = tmp / "lockgate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    data_dir = tmp / "data"
    key = create_key(data_dir)
    gw = Gateway(data_dir=data_dir, config=path, port=free_port())
    try:
        yield gw.start(), key
    finally:
        gw.stop()


# -- helpers ------------------------------------------------------------------------------------------


def chat(gw: Gateway, key: str, route: str, *, stream: bool = False,
         content: str = "hello there") -> tuple[httpx.Response, str]:
    """One chat request with a request id of our own, so its trace can be found. Returns (response, id)."""
    request_id = "req_" + uuid.uuid4().hex
    body = {"model": route, "messages": [{"role": "user", "content": content}], "stream": stream}
    response = httpx.post(gw.api_url + "/chat/completions", json=body, timeout=15,
                          headers={"authorization": f"Bearer {key}", "x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id
    return response, request_id


def trace_of(gw: Gateway, request_id: str, wait_s: float = 3.0) -> dict[str, Any]:
    return gw.trace(request_id, wait_s)


def attempts(trace: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    return [(a["target"], a["link"], a["try_number"], a["outcome"]) for a in trace["attempts"]]


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def answer_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    return body["choices"][0]["message"]["content"]


def sse_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an SSE body, decoded; `[DONE]` stays a string."""
    events = []
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))


def assert_stream_error(events: list[Any]) -> None:
    """A committed stream that broke: content first, then one error event and no [DONE]."""
    assert "[DONE]" not in events
    assert isinstance(events[-1], dict) and set(events[-1]) == {"error"}
    assert events[-1]["error"]["code"] == "stream_interrupted"


# -- connection refused ---------------------------------------------------------------------------------


def test_connection_refused_is_retried_then_502(gateway):
    gw, key = gateway
    response, rid = chat(gw, key, "refused")
    error = assert_openai_error(response, 502)
    assert error["type"] == "upstream_error"
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("dead", 0, 1, "connect"), ("dead", 0, 2, "connect"), ("dead", 0, 3, "connect")]
    assert trace["retries"] == 2
    assert (trace["status"], trace["outcome"]) == (502, "upstream_error")
    assert trace["served_by"] is None and trace["fallback_used"] is False


def test_connection_refused_falls_back_to_static_answer(gateway):
    gw, key = gateway
    response, rid = chat(gw, key, "refused-static")
    assert answer_of(response) == STATIC
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("dead", 0, 1, "connect"), ("dead", 0, 2, "connect"), ("static", 1, 1, "ok")]
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["fallback_used"]) == (
        200, "fallback", "static", True)


# -- hangs ------------------------------------------------------------------------------------------------


def test_hang_times_out_with_504(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-hang"]
    started = time.monotonic()
    response, rid = chat(gw, key, "hang")
    assert 0.9 < time.monotonic() - started < 3  # the release's total_s of 1 s, not the client's 15 s
    assert_openai_error(response, 504)
    trace = trace_of(gw, rid)
    # The first try waits out the whole budget: no time is left for a retry.
    assert attempts(trace) == [("up", 0, 1, "timeout")]
    assert (trace["status"], trace["outcome"], trace["retries"]) == (504, "upstream_timeout", 0)
    assert upstream.counts["fault-hang"] == before + 1


def test_hang_falls_back_to_static_answer(gateway):
    gw, key = gateway
    response, rid = chat(gw, key, "hang-static")
    assert answer_of(response) == STATIC
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "timeout"), ("static", 1, 1, "ok")]
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["fallback_used"]) == (
        200, "fallback", "static", True)


def test_streaming_hang_hits_first_token_timeout_then_falls_back(gateway):
    gw, key = gateway
    started = time.monotonic()
    response, rid = chat(gw, key, "hang-static", stream=True)
    assert time.monotonic() - started < 2.5
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert streamed_text(events) == STATIC and events[-1] == "[DONE]"
    trace = trace_of(gw, rid)
    # first_token_s is 0.5 s: two tries fit in the 1 s budget, each gives up on its first token.
    assert [a[3] for a in attempts(trace)] == ["first_token_timeout"] * 2 + ["ok"]
    assert attempts(trace)[-1] == ("static", 1, 1, "ok")
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["stream"]) == (
        200, "fallback", "static", True)


# -- HTTP status faults -----------------------------------------------------------------------------------


def test_http_500_is_retried_then_served_by_the_fallback_backend(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-500"]
    response, rid = chat(gw, key, "e500")
    assert answer_of(response) == "echo: hello there"  # the second backend's answer
    assert upstream.counts["fault-500"] == before + 2
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "http_status"), ("up", 0, 2, "http_status"), ("up2", 1, 1, "ok")]
    assert [a["status"] for a in trace["attempts"]] == [500, 500, None]
    assert [a["model"] for a in trace["attempts"]] == ["fault-500", "fault-500", "ok"]
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["fallback_used"], trace["retries"]) == (
        200, "fallback", "up2", True, 1)


def test_http_400_is_not_retried_and_goes_straight_to_the_fallback(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-400"]
    response, rid = chat(gw, key, "e400")
    assert answer_of(response) == "echo: hello there"
    assert upstream.counts["fault-400"] == before + 1  # max_attempts is 3, yet one call only
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "http_status"), ("up2", 1, 1, "ok")]
    assert trace["attempts"][0]["status"] == 400
    assert (trace["retries"], trace["served_by"], trace["fallback_used"]) == (0, "up2", True)


def test_http_400_without_fallback_is_one_attempt_and_502(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-400"]
    response, rid = chat(gw, key, "e400-alone")
    assert_openai_error(response, 502)
    assert upstream.counts["fault-400"] == before + 1
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "http_status")]
    assert (trace["status"], trace["outcome"], trace["retries"]) == (502, "upstream_error", 0)


def test_retries_back_off_between_attempts(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-429"]
    response, rid = chat(gw, key, "e429")
    assert_openai_error(response, 502)
    assert upstream.counts["fault-429"] == before + 3
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, n, "http_status") for n in (1, 2, 3)]
    assert [a["status"] for a in trace["attempts"]] == [429, 429, 429]
    assert trace["retries"] == 2
    # Backoff 0.1 s then 0.2 s, each with up to half taken off by jitter: at least 0.05 + 0.1 s slept.
    assert trace["upstream_ms"] >= 150
    assert trace["upstream_ms"] - sum(a["duration_ms"] for a in trace["attempts"]) >= 150


# -- malformed answers ------------------------------------------------------------------------------------


def test_malformed_json_is_retried_then_falls_back(gateway, upstream):
    gw, key = gateway
    before = upstream.counts["fault-malformed"]
    response, rid = chat(gw, key, "malformed")
    assert answer_of(response) == "echo: hello there"
    assert upstream.counts["fault-malformed"] == before + 2
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "malformed"), ("up", 0, 2, "malformed"), ("up2", 1, 1, "ok")]
    assert (trace["outcome"], trace["served_by"], trace["retries"]) == ("fallback", "up2", 1)


def test_malformed_json_without_fallback_is_502(gateway):
    gw, key = gateway
    response, rid = chat(gw, key, "malformed-alone")
    assert_openai_error(response, 502)
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "malformed"), ("up", 0, 2, "malformed")]
    assert (trace["status"], trace["outcome"], trace["served_by"]) == (502, "upstream_error", None)


def test_malformed_stream_event_after_first_token_is_a_stream_error(gateway):
    # The fake sends one good content chunk before the bad event: the stream is committed by then,
    # so the gateway cannot fall back and reports the break in-band.
    gw, key = gateway
    response, rid = chat(gw, key, "malformed", stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    assert_stream_error(events)
    assert streamed_text(events) and "echo: hello there".startswith(streamed_text(events))
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "malformed")]
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["fallback_used"]) == (
        502, "stream_error", "up", False)


# -- cut connections -----------------------------------------------------------------------------------------


def test_stream_cut_midway_reaches_the_sdk_as_an_api_error(gateway):
    gw, key = gateway
    client = OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)
    rid = "req_" + uuid.uuid4().hex
    stream = client.chat.completions.create(
        model="cut", messages=[{"role": "user", "content": "hello there"}], stream=True,
        extra_headers={"x-request-id": rid},
    )
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
    received = "".join(pieces)
    # The fake sends two content chunks, then hangs up: the client holds the start of the answer.
    assert received and received != "echo: hello there" and "echo: hello there".startswith(received)
    assert "mid-stream" in info.value.message
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "stream_cut")]
    assert (trace["status"], trace["outcome"], trace["served_by"], trace["fallback_used"]) == (
        502, "stream_error", "up", False)
    assert trace["output"] == received


def test_cut_before_any_answer_falls_back(gateway, upstream):
    # Without streaming the cut comes before anything reached the client (a truncated JSON body),
    # so it is retried and then served by the fallback.
    gw, key = gateway
    before = upstream.counts["fault-cut-stream"]
    response, rid = chat(gw, key, "cut")
    assert answer_of(response) == "echo: hello there"
    assert upstream.counts["fault-cut-stream"] == before + 2
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "stream_cut"), ("up", 0, 2, "stream_cut"), ("up2", 1, 1, "ok")]
    assert (trace["outcome"], trace["served_by"]) == ("fallback", "up2")


# -- slow upstreams ---------------------------------------------------------------------------------------------


def test_slow_answer_within_the_budget_is_served(gateway):
    gw, key = gateway
    response, rid = chat(gw, key, "slow")
    assert answer_of(response) == "echo: hello there"
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "ok")]
    assert trace["attempts"][0]["duration_ms"] >= 250
    assert (trace["status"], trace["outcome"], trace["retries"]) == (200, "ok", 0)


def test_slow_stream_past_the_total_timeout_is_cut_by_the_gateway(gateway):
    # First chunk at once (committed), then 0.4 s per chunk: the 1 s budget runs out mid-stream.
    gw, key = gateway
    started = time.monotonic()
    response, rid = chat(gw, key, "slow-stream", stream=True)
    assert time.monotonic() - started < 2
    events = sse_events(response)
    assert_stream_error(events)
    assert "echo: hello there".startswith(streamed_text(events)) and streamed_text(events)
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "timeout")]
    assert (trace["status"], trace["outcome"], trace["served_by"]) == (502, "stream_error", "up")


# -- circuit breaker ---------------------------------------------------------------------------------------------


def circuit_gauge(gw: Gateway, backend: str) -> float | None:
    for line in httpx.get(gw.base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f'lockgate_circuit_state{{backend="{backend}"}} '):
            return float(line.split()[-1])
    return None


def test_circuit_opens_and_stops_calling_the_upstream(tmp_path: Path, upstream, start_gateway):
    config = write_config(
        tmp_path / "lockgate.yaml", upstream.base_url, model="fault-500",
        release_extra="        retry: {max_attempts: 1}",
        backend_extra="    circuit: {failure_threshold: 2, cooldown_s: 30}",
    )
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    gw = start_gateway(config, data_dir=data_dir)

    before = upstream.counts["fault-500"]
    for _ in range(2):  # two consecutive failures: the threshold
        response, rid = chat(gw, key, "echo")
        assert_openai_error(response, 502)
        assert attempts(trace_of(gw, rid)) == [("up", 0, 1, "http_status")]
    assert upstream.counts["fault-500"] == before + 2

    response, rid = chat(gw, key, "echo")
    assert_openai_error(response, 502, code="circuit_open")
    assert upstream.counts["fault-500"] == before + 2  # the open circuit kept the call off the upstream
    trace = trace_of(gw, rid)
    assert attempts(trace) == [("up", 0, 1, "circuit_open")]
    assert trace["attempts"][0]["duration_ms"] == 0
    assert (trace["status"], trace["outcome"], trace["served_by"]) == (502, "upstream_error", None)

    deadline = time.monotonic() + 3
    while circuit_gauge(gw, "up") != 2.0:
        assert time.monotonic() < deadline, f"circuit gauge is {circuit_gauge(gw, 'up')}, not 2.0 (open)"
        time.sleep(0.1)
