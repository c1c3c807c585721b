"""`POST /v1/chat/completions`: the request path from bytes in to bytes out.

authenticate -> parse and validate -> route -> rate limit -> release -> call (resilience) ->
respond -> journal the trace. Every outcome, errors included, leaves exactly one trace, written to
the journal before the response is acknowledged.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockgate.backends.base import BackendCall
from lockgate.errors import LockgateError
from lockgate.gateway import guarding, responses
from lockgate.gateway.admission import (
    assign_release,
    authenticate,
    charge_tokens,
    check_rate_limits,
    check_route_access,
    read_body,
)
from lockgate.gateway.headers import request_id_from
from lockgate.gateway.openai_types import ChatRequest, parse_chat_request
from lockgate.gateway.recording import error_response, record
from lockgate.gateway.request_state import JSON, RequestState, outcome_of
from lockgate.gateway.runtime import Runtime, ServingRelease
from lockgate.gateway.streaming import stream_answer
from lockgate.guards.leakage import with_canary
from lockgate.retrieval import Retrieved, system_prompt_with_facts
from lockgate.store import ApiKeyRecord


async def handle_chat(request: Request, rt: Runtime) -> Response:
    state = RequestState(
        request_id=request_id_from(request.headers), started=time.perf_counter(), created=int(time.time())
    )
    if rt.telemetry is not None:
        state.trace_context = rt.telemetry.incoming_context(request.headers)
    try:
        body = await read_body(request, rt.config.server.max_body_bytes)
        state.key = authenticate(request, rt)
        state.chat = parse_chat_request(body)
        check_route_access(state.chat, state.key, rt)
        state.assignment = assign_release(state.chat, request, state.request_id, rt)
        state.release = rt.release_for(state.chat.model, state.assignment.version or rt.route_state(
            state.chat.model).stable)
        await check_rate_limits(state, rt)
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
        call = state.call = backend_call(release, state.chat, guarded, state.retrieved)
        if state.chat.stream:
            return await stream_answer(state, call, rt)
        completion = await rt.caller.complete(release.spec, call, state.log)
        answer = await guarding.guard_answer(
            guarded, release.spec, completion, lambda: rt.caller.complete(release.spec, call, state.log)
        )
    except LockgateError as exc:
        return error_response(state, exc, rt)
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
    charge_tokens(state, rt)
    headers = state.headers()
    record(state, rt, status=200, outcome=outcome_of(state))
    return Response(body, status_code=200, media_type=JSON, headers=headers)


def _dry_run(state: RequestState, rt: Runtime) -> Response:
    """Input guards only: the verdicts, the combined action, and no backend call."""
    assert state.guarded is not None
    headers = state.headers()
    headers[guarding.GUARD_ACTION_HEADER] = state.guarded.input.action.value
    record(state, rt, status=200, outcome="dry_run")
    return Response(orjson.dumps(guarding.dry_run_body(state.guarded)), media_type=JSON, headers=headers)


# -- steps -------------------------------------------------------------------------------------


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
    record(state, rt, status=200, outcome="kill_switch")
    return Response(body, status_code=200, media_type=JSON, headers=headers)


def _system_prompt(spec_prompt: str | None, canary: str | None, retrieved: Retrieved | None) -> str | None:
    """The release's system prompt with the retrieved facts, then the canary (when one is planted)."""
    prompt = system_prompt_with_facts(spec_prompt, retrieved)
    return with_canary(prompt, canary) if prompt and canary else prompt


def backend_call(release: ServingRelease, chat: ChatRequest, guarded: guarding.GuardedRequest,
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
        call = backend_call(release, state.chat, guarded, state.retrieved)
        completion = await rt.caller.complete(release.spec, call, state.log)
        answer = await guarding.guard_answer(
            guarded, release.spec, completion, lambda: rt.caller.complete(release.spec, call, state.log)
        )
    except LockgateError as exc:
        record(state, rt, status=exc.status, outcome=exc.code or "error", error=exc)
        return
    state.prompt_tokens = answer.completion.prompt_tokens
    state.completion_tokens = answer.completion.completion_tokens
    state.finish_reason = responses.normalise_finish_reason(answer.finish_reason)
    state.output = answer.text
    record(state, rt, status=200, outcome=outcome_of(state))
