"""Streamed answers (server-sent events): committed only after the first token, guarded as they flow,
and traced before the final `[DONE]`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from lockgate.backends.base import BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.gateway import guarding, responses
from lockgate.gateway.admission import charge_tokens
from lockgate.gateway.recording import record
from lockgate.gateway.request_state import RequestState, outcome_of
from lockgate.gateway.runtime import Runtime
from lockgate.guards.base import Action
from lockgate.guards.streaming import StreamGuard


async def stream_answer(state: RequestState, call: BackendCall, rt: Runtime) -> Response:
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
                outcome = outcome_of(state)
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
        charge_tokens(state, rt)
        record(state, rt, status=status, outcome=outcome)
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
