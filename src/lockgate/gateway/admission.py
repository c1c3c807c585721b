"""Admission of a request before any model runs: body size, API key, route access, release assignment
and rate limits. Shared by chat completions and feedback, so every endpoint reads and authenticates alike."""

from __future__ import annotations

import math

from starlette.requests import Request

from lockgate.auth.roles import require_data_plane_key
from lockgate.control.assignment import Assignment, assign
from lockgate.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RouteNotFound,
)
from lockgate.gateway.openai_types import ChatRequest
from lockgate.gateway.ratelimit import Charge, refuse_if_unavailable, retry_after_header
from lockgate.gateway.request_state import RequestState
from lockgate.gateway.runtime import Runtime
from lockgate.store import ApiKeyRecord, StoreUnavailable

PIN_HEADER = "x-lockgate-release"  # a tester pins a release of the route
USER_HEADER = "x-lockgate-user"  # the user id for sticky assignment when the body has no `user`


async def read_body(request: Request, limit: int) -> bytes:
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


def authenticate(request: Request, rt: Runtime) -> ApiKeyRecord | None:
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


def check_route_access(chat: ChatRequest, key: ApiKeyRecord | None, rt: Runtime) -> None:
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


def assign_release(chat: ChatRequest, request: Request, request_id: str, rt: Runtime) -> Assignment:
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


async def check_rate_limits(state: RequestState, rt: Runtime) -> None:
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


def charge_tokens(state: RequestState, rt: Runtime) -> None:
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
