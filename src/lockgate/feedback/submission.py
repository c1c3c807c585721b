"""`POST /v1/feedback` bodies: validated into one value, then into the journal record.

The body is `{"request_id": "...", "rating": "up" | "down" | 1..5, "comment": "...", "user": "..."}`.
Unlike chat completions, unknown fields are refused: there is no SDK adding fields here, and a
misspelt `commment` silently dropped would lose what the user wrote. Every error names the field
(`param`) and says what is accepted.

What is stored is not quite what was sent: the comment has its PII masked (`<EMAIL_REDACTED>`, ...) with the
same detector as the PII guard, and the end-user id is pseudonymised as in traces, so feedback and
traces of one user still join.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from lockgate.errors import InvalidRequest
from lockgate.feedback.rating import RATING_HELP, InvalidRating, Rating, parse_rating
from lockgate.gateway.headers import MAX_REQUEST_ID_CHARS, is_sane_request_id
from lockgate.guards.pii import find_pii
from lockgate.guards.redaction import mask

MAX_COMMENT_CHARS = 2000
MAX_USER_CHARS = 256  # as OpenAI's `user`
MAX_BODY_BYTES = 16_384  # the longest comment in 4-byte characters, with room to spare
FIELDS = ("request_id", "rating", "comment", "user")
RECORD_KIND = "feedback"
EXAMPLE = '{"request_id": "req_...", "rating": "up"}'


@dataclass(frozen=True)
class FeedbackSubmission:
    request_id: str
    rating: Rating
    comment: str | None = None
    user: str | None = None


def parse_feedback(body: bytes) -> FeedbackSubmission:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON ({exc}). Send a JSON object like {EXAMPLE}.", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object like {EXAMPLE}.", code="invalid_json")
    unknown = [name for name in data if name not in FIELDS]
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter: '{unknown[0]}'. Feedback accepts only: {', '.join(FIELDS)}.",
            param=unknown[0], code="unknown_parameter",
        )
    return FeedbackSubmission(
        request_id=_request_id(data.get("request_id")),
        rating=_rating(data),
        comment=_optional_text(data.get("comment"), "comment", MAX_COMMENT_CHARS),
        user=_optional_text(data.get("user"), "user", MAX_USER_CHARS),
    )


def _request_id(value: Any) -> str:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'request_id'. Send the x-request-id header of the chat completion "
            "being rated.", param="request_id", code="missing_required_parameter",
        )
    if not isinstance(value, str) or not is_sane_request_id(value):
        raise InvalidRequest(
            f"Invalid value for 'request_id': it must be a string of 1 to {MAX_REQUEST_ID_CHARS} printable ASCII "
            "characters, as in the x-request-id header of the chat completion being rated.",
            param="request_id", code="invalid_value",
        )
    return value


def _rating(data: dict[str, Any]) -> Rating:
    if "rating" not in data or data["rating"] is None:
        raise InvalidRequest(
            f"Missing required parameter: 'rating'. Send {RATING_HELP}.",
            param="rating", code="missing_required_parameter",
        )
    try:
        return parse_rating(data["rating"])
    except InvalidRating as exc:
        raise InvalidRequest(
            f"Invalid value for 'rating': {exc}. Send {RATING_HELP}.", param="rating", code="invalid_value"
        ) from None


def _optional_text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid value for '{name}': it must be a string or null.", param=name,
                             code="invalid_value")
    if len(value) > limit:
        raise InvalidRequest(
            f"Invalid value for '{name}': it is {len(value)} characters long; the limit is {limit}. Shorten it.",
            param=name, code="invalid_value",
        )
    return value or None


def new_feedback_id() -> str:
    return "fb_" + secrets.token_hex(12)


def feedback_record(submission: FeedbackSubmission, *, feedback_id: str, key_id: str | None,
                    ts: float, pseudonymise: Callable[[str], str]) -> dict[str, Any]:
    """The journal line (and, once loaded, the store row) for one submission. `pseudonymise` is the
    install's keyed pseudonym function, the one traces use, so that ratings and traces join."""
    user = pseudonymise(submission.user) if submission.user else None
    comment = submission.comment
    if comment:
        comment = mask(comment, find_pii(comment))
    return {
        "kind": RECORD_KIND,
        "feedback_id": feedback_id,
        "request_id": submission.request_id,
        "ts": ts,
        "rating": submission.rating.raw,
        "score": submission.rating.score,
        "comment": comment,
        "user": user,
        "key_id": key_id,
        # Who rated: one rating per request and rater counts; a later one replaces it (see the store).
        "rater": user or (f"key:{key_id}" if key_id else "anonymous"),
    }
