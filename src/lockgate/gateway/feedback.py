"""`POST /v1/feedback`: a user's rating of an earlier response, accepted without the database.

Same API keys as chat completions. The rating is validated, written to the trace journal (durable
once this returns, like a trace) and acknowledged with `202 Accepted` and its id: it is linked to the
rated request's trace when both are in the store (lockgate.feedback), which may be a moment later,
since the trace itself may still be on its way there.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockgate.errors import PayloadTooLarge, RateLimited
from lockgate.feedback.submission import (
    MAX_BODY_BYTES,
    MAX_COMMENT_CHARS,
    feedback_record,
    new_feedback_id,
    parse_feedback,
)
from lockgate.gateway.admission import authenticate, read_body
from lockgate.gateway.ratelimit import Charge, refuse_if_unavailable, retry_after_header
from lockgate.gateway.runtime import Runtime
from lockgate.store import ApiKeyRecord

JSON = "application/json"


async def handle_feedback(request: Request, rt: Runtime) -> Response:
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except PayloadTooLarge:
        raise PayloadTooLarge(
            f"The feedback body is larger than {MAX_BODY_BYTES} bytes: comments are limited to {MAX_COMMENT_CHARS} "
            "characters. Shorten the comment."
        ) from None
    key = authenticate(request, rt)
    await _check_rate_limit(key, rt)
    submission = parse_feedback(body)
    feedback_id, now = new_feedback_id(), time.time()
    rt.journal.append(feedback_record(submission, feedback_id=feedback_id, key_id=key.key_id if key else None, ts=now,
                                      pseudonymise=rt.pseudonyms.of))
    raw = submission.rating.raw
    return Response(
        orjson.dumps({
            "id": feedback_id,
            "object": "lockgate.feedback",
            "created": int(now),
            "request_id": submission.request_id,
            "rating": int(raw) if raw.isdigit() else raw,
            "score": submission.rating.score,
        }),
        status_code=202, media_type=JSON,
    )


async def _check_rate_limit(key: ApiKeyRecord | None, rt: Runtime) -> None:
    """Feedback has its own bucket per key, at the key's request rate: rating answers must not eat
    into the quota for getting them, and a flood of ratings is still refused."""
    if key is None:
        return
    per_minute = key.requests_per_minute or rt.config.server.default_key_rate_limit.requests_per_minute
    if not per_minute:
        return
    decision = await rt.rate_limiter.acquire_all(
        [Charge(f"key:{key.key_id}:feedback", 1, per_minute, "feedback requests per minute for this API key")]
    )
    refuse_if_unavailable(decision)
    if not decision.allowed:
        wait = retry_after_header(decision.retry_after_s)
        raise RateLimited(
            f"Rate limit reached: {per_minute} feedback requests per minute for this API key. Retry after {wait} s.",
            headers={"retry-after": wait},
        )
