"""`POST /v1/chat/completions`: the request path from bytes in to bytes out.

authenticate -> parse and validate -> route -> rate limit -> release -> call (resilience) ->
respond -> journal the trace. Every outcome, errors included, leaves exactly one trace, written to
the journal before the response is acknowledged.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lockgate.auth.roles import require_data_plane_key
from lockgate.backends.base import BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.control.assignment import Assignment, assign
from lockgate.errors import (
    AuthenticationFailed,
    InvalidRequest,
    LockgateError,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RouteNotFound,
)
from lockgate.gateway import guarding, responses
from lockgate.gateway.headers import request_id_from
from lockgate.gateway.openai_types import ChatRequest, parse_chat_request
from lockgate.gateway.ratelimit import Charge, refuse_if_unavailable, retry_after_header
from lockgate.gateway.resilience import CallLog
from lockgate.gateway.runtime import Runtime, ServingRelease
from lockgate.guards.base import Action
from lockgate.guards.leakage import with_canary
from lockgate.guards.streaming import StreamGuard
from lockgate.observe import metrics
from lockgate.retrieval import Retrieved, system_prompt_with_facts
from lockgate.store import ApiKeyRecord, StoreUnavailable

JSON = "application/json"
PIN_HEADER = "x-lockgate-release"  # a tester pins a release of the route
USER_HEADER = "x-lockgate-user"  # the user id for sticky assignment when the body has no `user`


@dataclass
class RequestState:
    """What is known about one request so far; becomes its trace."""

    request_id: str
    started: float
    created: int
    key: ApiKeyRecord | None = None
    chat: ChatRequest | None = None
    release: ServingRelease | None = None
    log: CallLog = field(default_factory=CallLog)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    ttft_ms: float | None = None
    output: str | None = None
    guarded: guarding.GuardedRequest | None = None
    assignment: Assignment | None = None
    shadow_of: str | None = None  # set on a shadow copy: the request it copies
    call: BackendCall | None = None  # as sent to the backend
    trace_context: Any = None  # the caller's OpenTelemetry context, when telemetry is on
    retrieved: Retrieved | None = None

    @property
    def route(self) -> str | None:
        return self.release.route if self.release else (self.chat.model if self.chat else None)

    @property
    def static_answer(self) -> bool:
        """The route's kill switch answers with a fixed message; no release is called."""
        return self.assignment is not None and self.assignment.static_message is not None

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def overhead_ms(self) -> float:
        return max(0.0, (self.elapsed_s() - self.log.upstream_s) * 1000)

    def headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id, "x-lockgate-overhead-ms": f"{self.overhead_ms():.3f}"}
        h["x-lockgate-release"] = self.release.release_id if self.release and not self.static_answer else "none"
        if self.assignment is not None:
            h["x-lockgate-assignment"] = self.assignment.role
        if self.guarded is not None:
            h[guarding.GUARD_ACTION_HEADER] = guarding.combined_action(self.guarded).value
        return h


async def handle_chat(request: Request, rt: Runtime) -> Response:
    state = RequestState(
        request_id=request_id_from(request.headers), started=time.perf_counter(), created=int(time.time())
    )
    if rt.telemetry is not None:
        state.trace_context = rt.telemetry.incoming_context(request.headers)
    try:
        body = await _read_body(request, rt.config.server.max_body_bytes)
        state.key = _authenticate(request, rt)
        state.chat = parse_chat_request(body)
        _check_route_access(state.chat, state.key, rt)
        state.assignment = _assign(state.chat, request, state.request_id, rt)
        state.release = rt.release_for(state.chat.model, state.assignment.version or rt.route_state(
            state.chat.model).stable)
        await _check_rate_limits(state, rt)
        if state.static_answer:
            return _static_answer(state, rt)
        release = state.release
        guarded = state.guarded = guarding.guard_input(
            rt.guards_for(release), release.spec, release.record.content_hash, state.chat
        )
        if request.headers.get(guarding.DRY_RUN_HEADER) == "guards":
            return _dry_run(state, rt)
        refusal = guarding.input_refusal(guarded.input)
        if refusal is not None:
            raise refusal
        if state.assignment.shadow_version is not None:
            rt.shadows.submit(state.request_id, state.chat, state.key, state.assignment.shadow_version)
        state.retrieved = guarding.retrieve_and_ground(guarded, rt.retriever_for(release))
        call = state.call = _backend_call(release, state.chat, guarded, state.retrieved)
        if state.chat.stream:
            return await _stream(state, call, rt)
        completion = await rt.caller.complete(release.spec, call, state.log)
        answer = await guarding.guard_answer(
            guarded, release.spec, completion, lambda: rt.caller.complete(release.spec, call, state.log)
        )
    except LockgateError as exc:
        return _error_response(state, exc, rt)
    completion = answer.completion
    state.prompt_tokens, state.completion_tokens = completion.prompt_tokens, completion.completion_tokens
    state.finish_reason = responses.normalise_finish_reason(answer.finish_reason)
    state.output = answer.text
    body = orjson.dumps(
        responses.completion_body(
            completion_id=f"chatcmpl-{state.request_id}", created=state.created, model=release.route,
            text=answer.text, finish_reason=state.finish_reason, prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
    )
    _charge_tokens(state, rt)
    headers = state.headers()
    _record(state, rt, status=200, outcome=_outcome(state))
    return Response(body, status_code=200, media_type=JSON, headers=headers)


def _outcome(state: RequestState) -> str:
    """ok, fallback (a fallback link answered), or guarded (an output guard withheld or replaced it)."""
    if state.guarded is not None and state.guarded.output is not None and state.guarded.output.stops:
        return "guarded"
    return "fallback" if state.log.fallback_used else "ok"


def _dry_run(state: RequestState, rt: Runtime) -> Response:
    """Input guards only: the verdicts, the combined action, and no backend call."""
    assert state.guarded is not None
    headers = state.headers()
    headers[guarding.GUARD_ACTION_HEADER] = state.guarded.input.action.value
    _record(state, rt, status=200, outcome="dry_run")
    return Response(orjson.dumps(guarding.dry_run_body(state.guarded)), media_type=JSON, headers=headers)


# -- steps -------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(
        f"The request body is larger than this gateway's limit of {limit} bytes. Send a shorter prompt, "
        "or raise `server.max_body_bytes` in lockgate.yaml."
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _authenticate(request: Request, rt: Runtime) -> ApiKeyRecord | None:
    if not rt.config.server.require_api_key:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "No API key provided. Send `Authorization: Bearer <key>`; create a key with "
            "`lockgate keys create --name NAME`."
        )
    key = rt.keys.lookup(token.strip())
    if key is None:
        raise AuthenticationFailed(
            "Incorrect or revoked API key. Check the key, or create a new one with `lockgate keys create --name NAME`."
        )
    require_data_plane_key(key.role)
    return key


def _check_route_access(chat: ChatRequest, key: ApiKeyRecord | None, rt: Runtime) -> None:
    route = rt.route(chat.model)
    if route is None:
        known = ", ".join(sorted(rt.config.routes)) or "none"
        raise RouteNotFound(
            f"The model '{chat.model}' does not exist: it is not a route of this gateway. Routes: {known}.",
            param="model",
        )
    if key is not None and key.routes is not None and chat.model not in key.routes:
        raise PermissionDenied(
            f"This API key may not use the route '{chat.model}'. It may use: {', '.join(key.routes)}.",
            param="model",
        )


def _assign(chat: ChatRequest, request: Request, request_id: str, rt: Runtime) -> Assignment:
    """Kill switch, pins, experiments, canary weights: see lockgate.control.assignment."""
    pinned = None
    pin = request.headers.get(PIN_HEADER)
    if pin:
        pinned = _pinned_version(chat.model, pin.strip(), rt)
    user = chat.user or request.headers.get(USER_HEADER)
    assignment = assign(rt.route_state(chat.model), user=user, request_id=request_id, pinned=pinned)
    return assignment


def _pinned_version(route: str, pin: str, rt: Runtime) -> int:
    """A tester's pin: `x-lockgate-release: support-bot@3`, `3` or a label declared in the config."""
    config = rt.config.routes[route]
    version: int | None = None
    if pin in config.releases:
        version = rt.registry[route][pin].version
    elif pin.isdigit():
        version = int(pin)
    elif pin.startswith(route + "@") and pin[len(route) + 1:].isdigit():
        version = int(pin[len(route) + 1:])
    if version is not None:
        try:
            rt.release_for(route, version)
            return version
        except (KeyError, StoreUnavailable):
            pass
    raise InvalidRequest(
        f"The header {PIN_HEADER}: {pin!r} names no release of route '{route}'. Use a label "
        f"({', '.join(sorted(config.releases))}), a version number or {route}@N.",
        param=PIN_HEADER,
    )


def _static_answer(state: RequestState, rt: Runtime) -> Response:
    """The kill switch's fixed answer, in the shape of a normal completion."""
    assert state.assignment is not None and state.chat is not None
    state.output = state.assignment.static_message or ""
    state.finish_reason = "stop"
    body = orjson.dumps(
        responses.completion_body(
            completion_id=f"chatcmpl-{state.request_id}", created=state.created, model=state.chat.model,
            text=state.output, finish_reason="stop", prompt_tokens=0, completion_tokens=0,
        )
    )
    headers = state.headers()
    _record(state, rt, status=200, outcome="kill_switch")
    return Response(body, status_code=200, media_type=JSON, headers=headers)


def _limits(state: RequestState, rt: Runtime, *, prompt_cost: float, token_cost: float) -> list[Charge]:
    """The request's buckets: per key and per route, requests and tokens, wherever a limit is set."""
    assert state.release is not None
    default = rt.config.server.default_key_rate_limit
    route_limit = rt.config.routes[state.release.route].rate_limit
    candidates: list[tuple[str, float, int | None, str]] = []
    if state.key is not None:
        kid = state.key.key_id
        candidates += [
            (f"key:{kid}:req", prompt_cost, state.key.requests_per_minute or default.requests_per_minute,
             "requests per minute for this API key"),
            (f"key:{kid}:tok", token_cost, state.key.tokens_per_minute or default.tokens_per_minute,
             "tokens per minute for this API key"),
        ]
    route = state.release.route
    candidates += [
        (f"route:{route}:req", prompt_cost, route_limit.requests_per_minute, "requests per minute for this route"),
        (f"route:{route}:tok", token_cost, route_limit.tokens_per_minute, "tokens per minute for this route"),
    ]
    return [Charge(bucket, cost, limit, what) for bucket, cost, limit, what in candidates if limit]


async def _check_rate_limits(state: RequestState, rt: Runtime) -> None:
    assert state.chat is not None
    decision = await rt.rate_limiter.acquire_all(
        _limits(state, rt, prompt_cost=1, token_cost=_estimate_prompt_tokens(state.chat))
    )
    refuse_if_unavailable(decision)
    if not decision.allowed:
        refused = decision.refused_by
        assert refused is not None
        wait = retry_after_header(decision.retry_after_s)
        raise RateLimited(
            f"Rate limit reached: {refused.per_minute} {refused.what}. Retry after {wait} s, "
            "or ask an admin for a higher limit.",
            headers={"retry-after": wait},
        )


def _charge_tokens(state: RequestState, rt: Runtime) -> None:
    """Token limits are checked on an estimate up front and settled on the real count afterwards, in the
    background: the answer is ready and must not wait on the limiter."""
    if state.chat is None or state.release is None:
        return
    extra = state.prompt_tokens + state.completion_tokens - _estimate_prompt_tokens(state.chat)
    if extra > 0:
        token_charges = [c for c in _limits(state, rt, prompt_cost=0, token_cost=extra) if c.bucket.endswith(":tok")]
        rt.in_background(rt.rate_limiter.charge_all(token_charges))


def _estimate_prompt_tokens(chat: ChatRequest) -> int:
    # About four characters a token for English; good enough to refuse floods before they start.
    chars = sum(len(m.content) if isinstance(m.content, str) else 64 for m in chat.messages)
    return max(1, math.ceil(chars / 4))


def _system_prompt(spec_prompt: str | None, canary: str | None, retrieved: Retrieved | None) -> str | None:
    """The release's system prompt with the retrieved facts, then the canary (when one is planted)."""
    prompt = system_prompt_with_facts(spec_prompt, retrieved)
    return with_canary(prompt, canary) if prompt and canary else prompt


def _backend_call(release: ServingRelease, chat: ChatRequest, guarded: guarding.GuardedRequest,
                  retrieved: Retrieved | None = None) -> BackendCall:
    spec = release.spec
    messages: list[dict[str, Any]] = []
    system = _system_prompt(spec.system_prompt, guarded.context.canary, retrieved)
    if system:
        messages.append({"role": "system", "content": system})
    texts = [(m["role"], m["content"]) for m in guarded.messages]
    last_user = max((i for i, (role, _) in enumerate(texts) if role == "user"), default=None)
    for i, (role, text) in enumerate(texts):
        if role == "developer":
            role = "system"  # older backends do not know the developer role
        if i == last_user and spec.prompt_template:
            text = spec.prompt_template.replace("{input}", text)
        messages.append({"role": role, "content": text})
    params = spec.params
    max_tokens = chat.requested_max_tokens() or params.max_tokens
    if params.max_tokens_cap and max_tokens:
        max_tokens = min(max_tokens, params.max_tokens_cap)
    response_format = chat.response_format.model_dump(exclude_none=True) if chat.response_format else None
    return BackendCall(
        model=spec.model,
        messages=messages,
        temperature=chat.temperature if chat.temperature is not None else params.temperature,
        top_p=chat.top_p if chat.top_p is not None else params.top_p,
        max_tokens=max_tokens,
        stop=chat.stop_list() or params.stop,
        seed=chat.seed if chat.seed is not None else params.seed,
        response_format=response_format,
        user=chat.user,
    )


# -- streaming ---------------------------------------------------------------------------------


async def _stream(state: RequestState, call: BackendCall, rt: Runtime) -> Response:
    """Commits to a stream only after its first token, so early failures still retry or fall back."""
    assert state.release is not None and state.chat is not None
    first, rest, deadline = await rt.caller.open_stream(state.release.spec, call, state.log)
    state.ttft_ms = state.elapsed_s() * 1000
    headers = state.headers()
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"  # tell nginx-like proxies not to buffer the stream
    return StreamingResponse(
        _sse(state, first, rest, deadline, call, rt), media_type="text/event-stream", headers=headers
    )


async def _sse(
    state: RequestState,
    first: StreamDelta,
    rest: AsyncIterator[StreamDelta],
    deadline: float,
    call: BackendCall,
    rt: Runtime,
) -> AsyncIterator[bytes]:
    assert state.release is not None and state.chat is not None
    cid, model, created = f"chatcmpl-{state.request_id}", state.release.route, state.created
    include_usage = bool(state.chat.stream_options and state.chat.stream_options.include_usage)
    guarded = state.guarded
    assert guarded is not None
    guard = StreamGuard(guarded.guards, guarded.context, guarded.placeholders) if guarded.guards.has_output_guards \
        else None
    pieces: list[str] = []  # what the client received
    status, outcome = 200, "fallback" if state.log.fallback_used else "ok"
    completed = False

    def event(text: str) -> bytes:
        pieces.append(text)
        return responses.chunk_event(completion_id=cid, created=created, model=model, delta={"content": text})

    try:
        yield responses.chunk_event(completion_id=cid, created=created, model=model,
                                    delta={"role": "assistant", "content": ""})
        delta: StreamDelta | None = first
        while delta is not None:
            # Read to the end even after finish_reason: usage arrives in a chunk of its own.
            _absorb(state, delta)
            released = guard.feed(delta.text) if guard is not None else delta.text
            if released:
                yield event(released)
            if guard is not None and guard.tripped:
                break  # nothing more of this answer will be sent; stop generating it
            delta = await _next_before(rest, deadline)
        if guard is not None:
            tail = guard.finish()
            if tail:
                yield event(tail)
            guarded.output = guard.result
            if guard.tripped:
                replacement = await _replace_stopped_stream(state, guard, call, rt)
                if replacement:
                    yield event(replacement)
                outcome = _outcome(state)
        state.finish_reason = responses.normalise_finish_reason(state.finish_reason)
        yield responses.chunk_event(completion_id=cid, created=created, model=model, delta={},
                                    finish_reason=state.finish_reason)
        if include_usage:
            yield responses.usage_event(completion_id=cid, created=created, model=model,
                                        prompt_tokens=state.prompt_tokens, completion_tokens=state.completion_tokens)
        completed = True
    except BackendFailure as failure:
        rt.caller.record_stream_failure(state.log.served_by or "", failure, state.log)
        status, outcome = 502, "stream_error"
        if guard is not None:
            # What was generated before the break is judged and sent, as an unguarded stream would have.
            tail = guard.finish()
            guarded.output = guard.result
            if tail:
                yield event(tail)
        yield responses.error_event(
            {"error": {"message": f"The model backend failed mid-stream ({failure.message}); the answer above "
                                  "is incomplete. Retry the request.", "type": "upstream_error",
                       "param": None, "code": "stream_interrupted"}}
        )
    finally:
        state.output = "".join(pieces)
        if not completed and status == 200:
            status, outcome = 499, "client_disconnected"
        _charge_tokens(state, rt)
        _record(state, rt, status=status, outcome=outcome)
        await _aclose(rest)
    # The trace is journaled before [DONE]: a client that saw the end of the stream has a trace.
    # After an error event there is no [DONE]; the error is the end.
    if completed:
        yield responses.DONE_EVENT


async def _next_before(stream: AsyncIterator[StreamDelta], deadline: float) -> StreamDelta | None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BackendFailure("timeout", "the release's total timeout passed mid-stream", retryable=False)
    try:
        return await asyncio.wait_for(anext(stream), timeout=remaining)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise BackendFailure("timeout", "the release's total timeout passed mid-stream", retryable=False) from None


async def _replace_stopped_stream(state: RequestState, guard: StreamGuard, call: BackendCall, rt: Runtime) -> str:
    """What follows when output guards stopped a stream: a regenerated or fallback answer if the
    client has received nothing yet and the policy allows it, otherwise the withheld notice."""
    guarded, release = state.guarded, state.release
    assert guarded is not None and release is not None
    result = guard.result
    if result.action in (Action.REGENERATE, Action.FALLBACK) and not guard.released_text:
        async def regenerate() -> Completion:
            return await rt.caller.complete(release.spec, call, state.log)

        completion = await regenerate() if result.action is Action.REGENERATE else Completion("", "stop", 0, 0, "")
        answer = await guarding.guard_answer(guarded, release.spec, completion, regenerate)
        state.finish_reason = answer.finish_reason
        return answer.text
    state.finish_reason = "content_filter"
    return guarding.withheld_text(result)


def _absorb(state: RequestState, delta: StreamDelta) -> None:
    if delta.finish_reason:
        state.finish_reason = delta.finish_reason
    if delta.prompt_tokens is not None:
        state.prompt_tokens = delta.prompt_tokens
    if delta.completion_tokens is not None:
        state.completion_tokens = delta.completion_tokens


async def _aclose(stream: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - the stream is finished either way
            pass


# -- errors and traces -------------------------------------------------------------------------


def _error_response(state: RequestState, exc: LockgateError, rt: Runtime) -> Response:
    outcome = {
        400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "unknown_route",
        413: "too_large", 429: "rate_limited", 502: "upstream_error", 504: "upstream_timeout",
    }.get(exc.status, "error")
    if exc.code in (guarding.GuardBlocked.code, guarding.GuardHeld.code):
        outcome = exc.code
    headers = state.headers() | exc.headers
    _record(state, rt, status=exc.status, outcome=outcome, error=exc)
    return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=JSON, headers=headers)


def _record(state: RequestState, rt: Runtime, *, status: int, outcome: str, error: LockgateError | None = None) -> None:
    route, release = state.route, (None if state.static_answer else state.release)
    release_id = release.release_id if release else None
    elapsed = state.elapsed_s()
    trace: dict[str, Any] = {
        "trace_id": state.request_id,
        "shadow_of": state.shadow_of,
        "assignment": state.assignment.role if state.assignment else None,
        "ts": time.time(),
        "route": route,
        "release": release_id,
        "release_hash": release.record.content_hash if release else None,
        "key_id": state.key.key_id if state.key else None,
        "user": rt.pseudonyms.of(state.chat.user) if state.chat and state.chat.user else None,
        "stream": bool(state.chat and state.chat.stream),
        "status": status,
        "outcome": outcome,
        "error_code": error.code if error else None,
        "error": error.message if error else None,
        "latency_ms": round(elapsed * 1000, 3),
        "upstream_ms": round(state.log.upstream_s * 1000, 3),
        "overhead_ms": round(state.overhead_ms(), 3),
        "ttft_ms": round(state.ttft_ms, 3) if state.ttft_ms is not None else None,
        "prompt_tokens": state.prompt_tokens,
        "completion_tokens": state.completion_tokens,
        "finish_reason": state.finish_reason,
        "served_by": state.log.served_by,
        "fallback_used": state.log.fallback_used,
        "retries": state.log.retries,
        "attempts": [a.as_dict() for a in state.log.attempts],
    }
    if state.guarded is not None:
        trace.update(guarding.trace_fields(state.guarded))
    if state.retrieved is not None:
        trace["retrieval"] = state.retrieved.trace()
    trace.update(_content(state, rt))
    rt.trace_content.scrub(trace)
    rt.journal.append(trace)
    if rt.live is not None:
        rt.live.record(trace)  # shared live counters (Redis): an in-memory tally here, written in the background
    if rt.telemetry is not None:
        rt.telemetry.export(trace, parent=state.trace_context, call=state.call)

    labels = {"route": route or "unknown", "release": release_id or "none"}
    if route is not None and rt.route(route) is None:
        labels["route"] = "unknown"  # never let clients mint label values
    if state.shadow_of is not None:
        metrics.SHADOW_REQUESTS.labels(result=outcome, **labels).inc()
        return  # a shadow copy is not a request of the route: its numbers are in its trace only
    if state.assignment is not None:
        metrics.ASSIGNMENTS.labels(role=state.assignment.role, **labels).inc()
    metrics.REQUESTS.labels(outcome=outcome, **labels).inc()
    metrics.REQUEST_LATENCY.labels(**labels).observe(elapsed)
    if state.log.attempts:
        metrics.UPSTREAM_LATENCY.labels(**labels).observe(state.log.upstream_s)
    metrics.OVERHEAD.labels(**labels).observe(state.overhead_ms() / 1000)
    if state.prompt_tokens:
        metrics.TOKENS.labels(kind="prompt", **labels).inc(state.prompt_tokens)
    if state.completion_tokens:
        metrics.TOKENS.labels(kind="completion", **labels).inc(state.completion_tokens)
    if state.log.fallback_used:
        metrics.FALLBACKS.labels(target=state.log.served_by or "none", **labels).inc()
    if state.log.retries:
        metrics.RETRIES.labels(**labels).inc(state.log.retries)
    if state.guarded is not None:
        guarding.record_metrics(state.guarded, labels)
    for attempt in state.log.attempts:
        if attempt.outcome != "ok":
            metrics.ATTEMPT_FAILURES.labels(backend=attempt.target, kind=attempt.outcome).inc()


def _content(state: RequestState, rt: Runtime) -> dict[str, Any]:
    """Prompt and output as the route's `trace_content` setting allows (lockgate.privacy.content)."""
    if state.chat is None:
        return {}
    route = rt.route(state.chat.model)
    mode = route.trace_content if route else "none"
    if mode == "none":
        return {"content_mode": "none"}
    if state.guarded is not None:
        # As the input guards left them: redacted values never reach the trace store.
        prompt = state.guarded.messages
    else:
        try:
            prompt = [{"role": m.role, "content": m.text()} for m in state.chat.messages]
        except InvalidRequest:
            prompt = []
    output = state.output
    if output and state.guarded is not None:
        output = state.guarded.placeholders.redact_known(output)
    return rt.trace_content.fields(mode, prompt, output)


# -- shadow copies -------------------------------------------------------------------------------


async def run_shadow(rt: Runtime, primary_id: str, chat: ChatRequest, key: ApiKeyRecord | None, version: int) -> None:
    """The candidate answers a copy of a request; the answer is traced (linked to the original by
    `shadow_of`) and never returned. Same pipeline as live traffic: the candidate's guards, its
    backend chain, its output guards."""
    state = RequestState(request_id=f"{primary_id}-shadow", started=time.perf_counter(), created=int(time.time()),
                         key=key, shadow_of=primary_id)
    try:
        state.chat = chat.model_copy(update={"stream": False})
        state.release = release = rt.release_for(chat.model, version)
        guarded = state.guarded = guarding.guard_input(
            rt.guards_for(release), release.spec, release.record.content_hash, state.chat
        )
        refusal = guarding.input_refusal(guarded.input)
        if refusal is not None:
            raise refusal
        state.retrieved = guarding.retrieve_and_ground(guarded, rt.retriever_for(release))
        call = _backend_call(release, state.chat, guarded, state.retrieved)
        completion = await rt.caller.complete(release.spec, call, state.log)
        answer = await guarding.guard_answer(
            guarded, release.spec, completion, lambda: rt.caller.complete(release.spec, call, state.log)
        )
    except LockgateError as exc:
        _record(state, rt, status=exc.status, outcome=exc.code or "error", error=exc)
        return
    state.prompt_tokens = answer.completion.prompt_tokens
    state.completion_tokens = answer.completion.completion_tokens
    state.finish_reason = responses.normalise_finish_reason(answer.finish_reason)
    state.output = answer.text
    _record(state, rt, status=200, outcome=_outcome(state))
