"""The one trace every request leaves (journal, live counters, telemetry, metrics), and error responses."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.responses import Response

from lockgate.errors import InvalidRequest, LockgateError
from lockgate.gateway import guarding
from lockgate.gateway.request_state import JSON, RequestState
from lockgate.gateway.runtime import Runtime
from lockgate.observe import metrics


def error_response(state: RequestState, exc: LockgateError, rt: Runtime) -> Response:
    outcome = {
        400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "unknown_route",
        413: "too_large", 429: "rate_limited", 502: "upstream_error", 504: "upstream_timeout",
    }.get(exc.status, "error")
    if exc.code in (guarding.GuardBlocked.code, guarding.GuardHeld.code):
        outcome = exc.code
    headers = state.headers() | exc.headers
    record(state, rt, status=exc.status, outcome=outcome, error=exc)
    return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=JSON, headers=headers)


def record(state: RequestState, rt: Runtime, *, status: int, outcome: str, error: LockgateError | None = None) -> None:
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
