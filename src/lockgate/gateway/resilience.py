"""Calling a release's backends: timeouts, retries with backoff and jitter, circuit breakers and the
fallback chain. Every attempt, failed or not, is recorded for the trace.

The chain is the release's own backend, then its fallbacks in order. Each backend gets
`retry.max_attempts` tries on retryable failures only (connection, timeout, 5xx/429, malformed
answer); a non-retryable failure (e.g. an upstream 400) moves straight to the next link. A static
answer ends the chain and is served even when the deadline has passed, because it costs nothing.

For streams, an attempt is only committed once its first token arrives: before that, a failure is
retried or falls back invisibly; after it, the client already holds part of an answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lockgate.backends.base import Backend, BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.config.schema import BackendFallback, ReleaseSpec, RetryPolicy, StaticFallback
from lockgate.errors import UpstreamError, UpstreamTimeout
from lockgate.gateway.circuit import CircuitBreaker


@dataclass
class Attempt:
    target: str  # backend name, or "static"
    model: str | None
    link: int  # 0 is the release's own backend, 1.. the fallbacks
    try_number: int
    outcome: str  # "ok" or a BackendFailure kind
    duration_ms: float
    status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallLog:
    """What happened while serving one request; read by the trace and the metrics."""

    attempts: list[Attempt] = field(default_factory=list)
    upstream_s: float = 0.0  # time spent waiting on backends (incl. backoff sleeps)
    served_by: str | None = None
    fallback_used: bool = False
    retries: int = 0


@dataclass(frozen=True)
class Link:
    index: int
    backend: str | None
    model: str | None
    static_text: str | None = None


def chain_of(release: ReleaseSpec) -> list[Link]:
    links = [Link(0, release.backend, release.model)]
    for i, fb in enumerate(release.fallbacks, start=1):
        if isinstance(fb, StaticFallback):
            links.append(Link(i, None, None, static_text=fb.static))
            break  # nothing after a static answer can ever run
        assert isinstance(fb, BackendFallback)
        links.append(Link(i, fb.backend, fb.model or release.model))
    return links


def backoff_delay(policy: RetryPolicy, retry_number: int, rng: random.Random) -> float:
    """Exponential backoff, capped, with a random share (`jitter`) taken off to spread retries."""
    base = min(policy.backoff_max_s, policy.backoff_initial_s * (2 ** (retry_number - 1)))
    return base * (1 - policy.jitter * rng.random())


class ReleaseCaller:
    def __init__(
        self,
        backends: Mapping[str, Backend],
        breakers: Mapping[str, CircuitBreaker],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._backends = backends
        self._breakers = breakers
        self._rng = rng or random.Random()

    async def complete(self, release: ReleaseSpec, call: BackendCall, log: CallLog) -> Completion:
        deadline = time.monotonic() + release.timeouts.total_s
        last_failure: BackendFailure | None = None
        for link in chain_of(release):
            if link.static_text is not None:
                return self._static(link, call, log)
            attempt_call = _with_model(call, link.model)
            async for try_number in self._tries(release, link, deadline, log):
                started = time.monotonic()
                try:
                    remaining = max(0.001, deadline - started)
                    result = await self._backends[link.backend].complete(attempt_call, timeout_s=remaining)  # type: ignore[index]
                except BackendFailure as failure:
                    self._record_failure(link, try_number, started, failure, log)
                    last_failure = failure
                    if not failure.retryable:
                        break
                    continue
                self._record_success(link, try_number, started, log)
                return result
        raise _final_error(last_failure)

    async def open_stream(
        self, release: ReleaseSpec, call: BackendCall, log: CallLog
    ) -> tuple[StreamDelta, AsyncIterator[StreamDelta], float]:
        """Returns the first delta, the rest of the committed stream, and the stream's deadline."""
        deadline = time.monotonic() + release.timeouts.total_s
        last_failure: BackendFailure | None = None
        for link in chain_of(release):
            if link.static_text is not None:
                completion = self._static(link, call, log)
                first = StreamDelta(text=completion.text, finish_reason="stop", prompt_tokens=0, completion_tokens=0)
                # The static answer is whole and served even past the deadline: give the (empty) rest of
                # the stream a little time of its own, or the client would get a timeout error after it.
                return first, _empty(), max(deadline, time.monotonic() + 5.0)
            attempt_call = _with_model(call, link.model)
            async for try_number in self._tries(release, link, deadline, log):
                started = time.monotonic()
                first_token_s = max(0.001, min(release.timeouts.first_token_s, deadline - started))
                stream = self._backends[link.backend].stream(attempt_call, first_token_timeout_s=first_token_s)  # type: ignore[index]
                try:
                    first = await asyncio.wait_for(anext(stream), timeout=first_token_s)
                except StopAsyncIteration:
                    failure = BackendFailure("stream_cut", f"{link.backend} sent an empty stream", retryable=True)
                except TimeoutError:
                    failure = BackendFailure(
                        "first_token_timeout", f"{link.backend} sent nothing in {first_token_s:.1f}s", retryable=True
                    )
                except BackendFailure as exc:
                    failure = exc
                else:
                    self._record_success(link, try_number, started, log)
                    return first, stream, deadline
                await _close(stream)
                self._record_failure(link, try_number, started, failure, log)
                last_failure = failure
                if not failure.retryable:
                    break
        raise _final_error(last_failure)

    def record_stream_failure(self, backend: str, failure: BackendFailure, log: CallLog) -> None:
        """A committed stream broke after its first token: the client sees an error event."""
        breaker = self._breakers.get(backend)
        if breaker is not None and failure.retryable:
            breaker.record_failure()
        if log.attempts:
            last = log.attempts[-1]
            last.outcome, last.error, last.status = failure.kind, failure.message, failure.status

    async def _tries(self, release: ReleaseSpec, link: Link, deadline: float, log: CallLog) -> AsyncIterator[int]:
        """Yields try numbers for one link while its breaker, the retry budget and the deadline allow."""
        breaker = self._breakers[link.backend]  # type: ignore[index]
        for try_number in range(1, release.retry.max_attempts + 1):
            if try_number > 1:
                delay = backoff_delay(release.retry, try_number - 1, self._rng)
                if time.monotonic() + delay >= deadline:
                    return
                log.retries += 1
                await asyncio.sleep(delay)
                log.upstream_s += delay
            if time.monotonic() >= deadline:
                return
            if not breaker.allow():
                log.attempts.append(
                    Attempt(link.backend or "", link.model, link.index, try_number, "circuit_open", 0.0,
                            error=f"circuit open for {link.backend}")
                )
                return
            yield try_number

    def _record_failure(
        self, link: Link, try_number: int, started: float, failure: BackendFailure, log: CallLog
    ) -> None:
        elapsed = time.monotonic() - started
        log.upstream_s += elapsed
        if failure.retryable:
            self._breakers[link.backend].record_failure()  # type: ignore[index]
        else:
            # The backend answered (e.g. 400): it is up, whatever it thought of the request.
            self._breakers[link.backend].record_success()  # type: ignore[index]
        log.attempts.append(
            Attempt(link.backend or "", link.model, link.index, try_number, failure.kind, elapsed * 1000,
                    status=failure.status, error=failure.message)
        )

    def _record_success(self, link: Link, try_number: int, started: float, log: CallLog) -> None:
        elapsed = time.monotonic() - started
        log.upstream_s += elapsed
        self._breakers[link.backend].record_success()  # type: ignore[index]
        log.attempts.append(Attempt(link.backend or "", link.model, link.index, try_number, "ok", elapsed * 1000))
        log.served_by = link.backend
        log.fallback_used = link.index > 0

    @staticmethod
    def _static(link: Link, call: BackendCall, log: CallLog) -> Completion:
        log.attempts.append(Attempt("static", None, link.index, 1, "ok", 0.0))
        log.served_by = "static"
        log.fallback_used = True
        return Completion(text=link.static_text or "", finish_reason="stop", prompt_tokens=0, completion_tokens=0,
                          model=call.model)


def _with_model(call: BackendCall, model: str | None) -> BackendCall:
    if model is None or model == call.model:
        return call
    from dataclasses import replace

    return replace(call, model=model)


def _final_error(failure: BackendFailure | None) -> UpstreamError:
    if failure is None:
        return UpstreamError(
            "No backend could be tried: every circuit breaker on this release's chain is open. "
            "Retry later; the backend is being given time to recover.",
            code="circuit_open",
        )
    if failure.kind in ("timeout", "first_token_timeout"):
        return UpstreamTimeout(f"The model backend timed out ({failure.message}). Retry later.")
    return UpstreamError(f"The model backend failed ({failure.message}). Retry later.")


async def _empty() -> AsyncIterator[StreamDelta]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _close(stream: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - a broken stream may fail to close; it is discarded anyway
            pass
