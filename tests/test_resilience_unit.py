"""The resilience decision logic on its own: circuit breaker, backoff, the fallback chain and the
ReleaseCaller, driven by an injected clock and small in-test backends (no HTTP, no gateway)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from lockgate.backends.base import BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.config.schema import BackendFallback, ReleaseSpec, RetryPolicy, StaticFallback, Timeouts
from lockgate.errors import UpstreamError, UpstreamTimeout
from lockgate.gateway.circuit import CircuitBreaker, CircuitState
from lockgate.gateway.resilience import CallLog, ReleaseCaller, backoff_delay, chain_of

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

# -- circuit breaker ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_breaker(clock: FakeClock, threshold: int = 3, cooldown_s: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown_s, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    return breaker


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert CircuitState.OPEN.gauge_value == 2


def test_breaker_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED  # not 3 *consecutive* failures


def test_breaker_stays_open_until_cooldown_then_allows_exactly_one_probe() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, cooldown_s=10)
    clock.advance(9.9)
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # a second caller while the probe is in flight
    assert not breaker.allow()
    assert breaker.state is CircuitState.HALF_OPEN


def test_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, threshold=3, cooldown_s=10)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()  # the next probe
    assert not breaker.allow()


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(backoff_initial_s=0.1, backoff_max_s=1.0, jitter=0)
    rng = random.Random(1)
    delays = [backoff_delay(policy, n, rng) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("jitter", [0.25, 0.5, 1.0])
def test_backoff_jitter_stays_within_bounds(jitter: float) -> None:
    policy = RetryPolicy(backoff_initial_s=0.1, backoff_max_s=1.0, jitter=jitter)
    rng = random.Random(42)
    for retry_number in range(1, 8):
        base = min(1.0, 0.1 * 2 ** (retry_number - 1))
        samples = [backoff_delay(policy, retry_number, rng) for _ in range(200)]
        assert all(base * (1 - jitter) <= d <= base for d in samples)
        assert max(samples) - min(samples) > base * jitter * 0.5  # really spread, not constant


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(backoff_initial_s=0.1, backoff_max_s=2.0, jitter=0.5)
    a = [backoff_delay(policy, n, random.Random(7)) for n in range(1, 5)]
    b = [backoff_delay(policy, n, random.Random(7)) for n in range(1, 5)]
    assert a == b


# -- the chain --------------------------------------------------------------------------------------


def test_chain_stops_at_a_static_fallback() -> None:
    release = ReleaseSpec(
        backend="a", model="m",
        fallbacks=[BackendFallback(backend="b"), BackendFallback(backend="c", model="other"),
                   StaticFallback(static="sorry"), BackendFallback(backend="d")],
    )
    links = chain_of(release)
    assert [(k.index, k.backend, k.model, k.static_text) for k in links] == [
        (0, "a", "m", None),
        (1, "b", "m", None),  # a fallback without a model keeps the release's model
        (2, "c", "other", None),
        (3, None, None, "sorry"),
    ]


# -- ReleaseCaller with in-test backends --------------------------------------------------------------

CALL = BackendCall(model="m", messages=[{"role": "user", "content": "hi"}])


def connect_failure() -> BackendFailure:
    return BackendFailure("connect", "refused", retryable=True)


def http_400() -> BackendFailure:
    return BackendFailure("http_status", "HTTP 400", retryable=False, status=400)


class ScriptedBackend:
    """Plays a script, one step per call: a BackendFailure to raise, "hang" to wait out the timeout,
    or "ok" to answer. The last step repeats. Streams: "ok" yields two pieces, "cut" yields one
    piece and then fails, "empty" ends with no delta, "hang" never sends a first token."""

    def __init__(self, name: str, *script: BackendFailure | str) -> None:
        self.name = name
        self.script = list(script) or ["ok"]
        self.calls = 0
        self.models: list[str] = []

    def _next(self, call: BackendCall) -> BackendFailure | str:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        self.models.append(call.model)
        return step

    async def complete(self, call: BackendCall, *, timeout_s: float) -> Completion:
        step = self._next(call)
        if step == "hang":
            await asyncio.sleep(timeout_s)
            raise BackendFailure("timeout", f"{self.name} did not answer in {timeout_s:.2f}s", retryable=True)
        if isinstance(step, BackendFailure):
            raise step
        return Completion(text=f"from {self.name}", finish_reason="stop", prompt_tokens=1, completion_tokens=2,
                          model=call.model)

    async def stream(self, call: BackendCall, *, first_token_timeout_s: float) -> AsyncIterator[StreamDelta]:
        step = self._next(call)
        if isinstance(step, BackendFailure):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "empty":
            return
        yield StreamDelta(text=f"{self.name}-1 ")
        if step == "cut":
            raise BackendFailure("stream_cut", f"{self.name} cut the stream", retryable=True)
        yield StreamDelta(text=f"{self.name}-2", finish_reason="stop", prompt_tokens=1, completion_tokens=2)

    def is_ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def make_caller(*backends: ScriptedBackend, threshold: int = 100) -> tuple[ReleaseCaller, dict[str, CircuitBreaker]]:
    breakers = {b.name: CircuitBreaker(failure_threshold=threshold, cooldown_s=30) for b in backends}
    return ReleaseCaller({b.name: b for b in backends}, breakers, rng=random.Random(0)), breakers


def release(*fallbacks: BackendFallback | StaticFallback, attempts: int = 3, total_s: float = 5.0,
            first_token_s: float = 5.0, backoff_s: float = 0.001) -> ReleaseSpec:
    return ReleaseSpec(
        backend="a", model="m", fallbacks=list(fallbacks),
        retry=RetryPolicy(max_attempts=attempts, backoff_initial_s=backoff_s, backoff_max_s=backoff_s * 4),
        timeouts=Timeouts(total_s=total_s, first_token_s=first_token_s),
    )


def summary(log: CallLog) -> list[tuple[str, int, int, str]]:
    return [(a.target, a.link, a.try_number, a.outcome) for a in log.attempts]


async def test_retryable_failure_is_retried_on_the_same_backend() -> None:
    a = ScriptedBackend("a", connect_failure(), "ok")
    caller, _ = make_caller(a)
    log = CallLog()
    result = await caller.complete(release(), CALL, log)
    assert result.text == "from a"
    assert summary(log) == [("a", 0, 1, "connect"), ("a", 0, 2, "ok")]
    assert log.retries == 1 and log.served_by == "a" and not log.fallback_used


async def test_exhausted_retries_move_to_the_next_link_with_its_model() -> None:
    a, b = ScriptedBackend("a", connect_failure()), ScriptedBackend("b")
    caller, _ = make_caller(a, b)
    log = CallLog()
    result = await caller.complete(release(BackendFallback(backend="b", model="small"), attempts=3), CALL, log)
    assert result.text == "from b"
    assert summary(log) == [("a", 0, 1, "connect"), ("a", 0, 2, "connect"), ("a", 0, 3, "connect"),
                            ("b", 1, 1, "ok")]
    assert a.calls == 3 and b.models == ["small"]
    assert log.retries == 2 and log.served_by == "b" and log.fallback_used


async def test_non_retryable_failure_goes_straight_to_the_next_link() -> None:
    a, b = ScriptedBackend("a", http_400()), ScriptedBackend("b")
    caller, breakers = make_caller(a, b, threshold=1)
    log = CallLog()
    result = await caller.complete(release(BackendFallback(backend="b"), attempts=5), CALL, log)
    assert result.text == "from b"
    assert a.calls == 1
    assert summary(log) == [("a", 0, 1, "http_status"), ("b", 1, 1, "ok")]
    assert log.attempts[0].status == 400 and log.retries == 0
    # The backend answered: a 400 is the request's fault and must not trip the breaker.
    assert breakers["a"].state is CircuitState.CLOSED


async def test_non_retryable_failure_without_fallback_is_an_upstream_error() -> None:
    a = ScriptedBackend("a", http_400())
    caller, _ = make_caller(a)
    log = CallLog()
    with pytest.raises(UpstreamError) as info:
        await caller.complete(release(attempts=5), CALL, log)
    assert info.value.status == 502
    assert a.calls == 1 and summary(log) == [("a", 0, 1, "http_status")]


async def test_deadline_stops_retries() -> None:
    a = ScriptedBackend("a", "hang")
    caller, _ = make_caller(a)
    log = CallLog()
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        await caller.complete(release(attempts=10, total_s=0.3, backoff_s=0.05), CALL, log)
    elapsed = time.monotonic() - started
    assert info.value.status == 504
    assert elapsed < 0.6
    # The first try spends the whole budget, so no retry fits in what is left.
    assert a.calls == 1 and summary(log) == [("a", 0, 1, "timeout")] and log.retries == 0


async def test_static_fallback_is_served_even_after_the_deadline() -> None:
    a, b = ScriptedBackend("a", "hang"), ScriptedBackend("b")
    caller, _ = make_caller(a, b)
    log = CallLog()
    spec = release(BackendFallback(backend="b"), StaticFallback(static="Sorry, try later."), attempts=3, total_s=0.2)
    result = await caller.complete(spec, CALL, log)
    assert result.text == "Sorry, try later." and result.finish_reason == "stop"
    assert b.calls == 0  # no time left for a backend, but a static answer costs nothing
    assert summary(log) == [("a", 0, 1, "timeout"), ("static", 2, 1, "ok")]
    assert log.served_by == "static" and log.fallback_used


async def test_open_circuit_is_recorded_and_skips_the_backend() -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    caller, breakers = make_caller(a, b, threshold=1)
    breakers["a"].record_failure()
    log = CallLog()
    result = await caller.complete(release(BackendFallback(backend="b")), CALL, log)
    assert result.text == "from b" and a.calls == 0
    assert summary(log) == [("a", 0, 1, "circuit_open"), ("b", 1, 1, "ok")]


async def test_all_circuits_open_is_a_circuit_open_error() -> None:
    a = ScriptedBackend("a")
    caller, breakers = make_caller(a, threshold=1)
    breakers["a"].record_failure()
    log = CallLog()
    with pytest.raises(UpstreamError) as info:
        await caller.complete(release(), CALL, log)
    assert info.value.code == "circuit_open" and a.calls == 0
    assert summary(log) == [("a", 0, 1, "circuit_open")]


async def test_retryable_failures_trip_the_breaker_mid_request() -> None:
    a = ScriptedBackend("a", connect_failure())
    caller, breakers = make_caller(a, threshold=2)
    log = CallLog()
    with pytest.raises(UpstreamError):
        await caller.complete(release(attempts=5), CALL, log)
    assert a.calls == 2
    assert [x.outcome for x in log.attempts] == ["connect", "connect", "circuit_open"]
    assert breakers["a"].state is CircuitState.OPEN


# -- streams ---------------------------------------------------------------------------------------------


async def drain(rest: AsyncIterator[StreamDelta]) -> list[str]:
    return [d.text async for d in rest]


async def test_stream_failure_before_first_token_retries_invisibly() -> None:
    a = ScriptedBackend("a", connect_failure(), "empty", "ok")
    caller, _ = make_caller(a)
    log = CallLog()
    first, rest, _ = await caller.open_stream(release(attempts=3), CALL, log)
    assert first.text == "a-1 " and await drain(rest) == ["a-2"]
    assert summary(log) == [("a", 0, 1, "connect"), ("a", 0, 2, "stream_cut"), ("a", 0, 3, "ok")]


async def test_stream_without_first_token_in_time_falls_back() -> None:
    a, b = ScriptedBackend("a", "hang"), ScriptedBackend("b")
    caller, _ = make_caller(a, b)
    log = CallLog()
    started = time.monotonic()
    first, rest, _ = await caller.open_stream(
        release(BackendFallback(backend="b"), attempts=1, first_token_s=0.1), CALL, log
    )
    assert time.monotonic() - started < 1
    assert first.text == "b-1 " and await drain(rest) == ["b-2"]
    assert summary(log) == [("a", 0, 1, "first_token_timeout"), ("b", 1, 1, "ok")]
    assert log.served_by == "b" and log.fallback_used


async def test_stream_static_fallback_is_one_finished_delta() -> None:
    a = ScriptedBackend("a", connect_failure())
    caller, _ = make_caller(a)
    log = CallLog()
    first, rest, _ = await caller.open_stream(release(StaticFallback(static="static text"), attempts=1), CALL, log)
    assert (first.text, first.finish_reason) == ("static text", "stop")
    assert await drain(rest) == []
    assert log.served_by == "static"


async def test_stream_commits_after_the_first_token() -> None:
    a, b = ScriptedBackend("a", "cut"), ScriptedBackend("b")
    caller, breakers = make_caller(a, b, threshold=1)
    log = CallLog()
    first, rest, _ = await caller.open_stream(release(BackendFallback(backend="b"), attempts=3), CALL, log)
    # Committed: the first token came from `a`, so no retry and no fallback can happen any more.
    assert first.text == "a-1 "
    assert summary(log) == [("a", 0, 1, "ok")] and log.served_by == "a"
    with pytest.raises(BackendFailure) as info:
        await drain(rest)
    assert info.value.kind == "stream_cut"
    caller.record_stream_failure("a", info.value, log)
    assert summary(log) == [("a", 0, 1, "stream_cut")]
    assert a.calls == 1 and b.calls == 0
    assert breakers["a"].state is CircuitState.OPEN


async def test_stream_static_fallback_after_the_deadline_leaves_time_to_finish() -> None:
    # The static answer is served although the budget is spent; the stream's own deadline must not
    # already be over, or the client would get a timeout error event after the whole answer.
    a = ScriptedBackend("a", "hang")
    caller, _ = make_caller(a)
    log = CallLog()
    spec = release(StaticFallback(static="static text"), attempts=1, total_s=0.1, first_token_s=0.1)
    first, rest, deadline = await caller.open_stream(spec, CALL, log)
    assert first.text == "static text"
    assert deadline > time.monotonic()
    assert summary(log) == [("a", 0, 1, "first_token_timeout"), ("static", 1, 1, "ok")]


# -- how an HTTP backend classifies a bad stream (what the retry decisions above rely on) ------------


@pytest.mark.parametrize("event", [
    "data: {not json",
    'data: [1, 2]',
    'data: {"choices": [1]}',
    'data: {"choices": [{"delta": "text"}]}',
    'data: {"choices": 5}',
    'data: {"usage": 3, "choices": []}',
    'data: {"choices": [{"delta": {"content": 5}}]}',
])
async def test_badly_shaped_stream_events_are_retryable_malformed_failures(event: str) -> None:
    from lockgate.backends.http import _parse_sse

    async def lines() -> AsyncIterator[str]:
        for line in (event, "data: [DONE]"):
            yield line

    with pytest.raises(BackendFailure) as info:
        async for _ in _parse_sse("up", lines()):
            pass
    assert (info.value.kind, info.value.retryable) == ("malformed", True)


def test_a_lost_half_open_probe_stops_blocking_after_one_cooldown():
    """A probe whose request vanished without success or failure must not close the backend forever."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 10.0
    assert breaker.allow() is True  # the probe; its outcome is never recorded
    assert breaker.allow() is False
    now[0] = 19.9
    assert breaker.allow() is False
    now[0] = 20.0
    assert breaker.allow() is True
