"""OpenAI-shaped response bodies: completions, stream chunks, model lists, errors.

Shapes follow OpenAI's own OpenAPI document (`CreateChatCompletionResponse`,
`CreateChatCompletionStreamResponse`, `ListModelsResponse`, `ErrorResponse`); the tests validate
them against it.
"""

from __future__ import annotations

from typing import Any

import orjson

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def normalise_finish_reason(reason: str | None) -> str:
    """Backends invent their own reasons ("eos", "max_tokens"); clients only know OpenAI's five."""
    if reason in FINISH_REASONS:
        return reason  # type: ignore[return-value]
    if reason in ("max_tokens", "max_length", "model_length"):
        return "length"
    return "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    *, completion_id: str, created: int, model: str, text: str, finish_reason: str, prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": normalise_finish_reason(finish_reason),
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk_event(
    *, completion_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> bytes:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": normalise_finish_reason(finish_reason) if finish_reason else None,
            }
        ],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def usage_event(*, completion_id: str, created: int, model: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def error_event(body: dict[str, Any]) -> bytes:
    """An error after the stream began: the OpenAI SDK raises APIError when an event carries `error`."""
    return b"data: " + orjson.dumps(body) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"


def models_body(routes: list[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": r, "object": "model", "created": created, "owned_by": "lockgate"} for r in routes],
    }
