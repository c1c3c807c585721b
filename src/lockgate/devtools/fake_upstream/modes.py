"""Fault modes and response bodies: what the fake says, kept apart from how it speaks HTTP.

Why it exists: the mode names, their parsing and the exact JSON/SSE bytes of a completion or an error
are the contract tests assert on; isolating them keeps that contract readable without the socket code.
"""

from __future__ import annotations

from typing import Any

import orjson

FAULT_MODES: tuple[str, ...] = (
    "ok",
    "fault-500",
    "fault-429",
    "fault-400",
    "fault-hang",
    "fault-malformed",
    "fault-cut-stream",
    "fault-slow",
    "fault-slow-stream",
    "fault-leak",
)
"""Every mode the fake understands; `fault-slow` and `fault-slow-stream` also accept a `-SECONDS` suffix."""

DEFAULT_DELAY_S = 2.0
# `fault-leak`: a well-formed answer that leaks personal data, for output-guard scenarios.
LEAKED_ANSWER = "Sure. The customer is jane.doe@example.com, card 4111 1111 1111 1111."
MAX_CONTENT_CHARS = 200
STREAM_PIECES = 4

_DONE_EVENT = b"data: [DONE]\n\n"
_BAD_EVENT = b"data: {not json\n\n"
_MALFORMED_BODY = b'{"id": "x", "choices": ['


def parse_mode(mode: str) -> tuple[str, float | None]:
    """Split a mode name into (base mode, delay override).

    The delay suffix exists so one model name in a release config ("fault-slow-0.5") says the whole
    fault, with no side channel. Only the slow modes take a suffix; anything unknown is a ValueError
    so a typo in a test fails loudly instead of silently behaving like `ok`.
    """
    if mode in FAULT_MODES:
        return mode, None
    for base in ("fault-slow-stream", "fault-slow"):
        prefix = base + "-"
        if mode.startswith(prefix):
            try:
                delay = float(mode[len(prefix) :])
            except ValueError:
                continue
            if delay < 0:
                raise ValueError(f"negative delay in fault mode {mode!r}")
            return base, delay
    known = ", ".join(FAULT_MODES)
    raise ValueError(f"unknown fault mode {mode!r}; known: {known} (slow modes accept -SECONDS)")


def _error_body(message: str, err_type: str, code: str | None) -> bytes:
    """OpenAI's error envelope, because the SDK and the gateway both parse exactly this shape."""
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": None, "code": code}})


def _text_of(content: Any) -> str:
    """Text of a message `content`, which OpenAI allows as a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _count_tokens(text: str) -> int:
    """Whitespace word count: deterministic and cheap, which is all a fake's usage numbers need to be."""
    return len(text.split())


def _completion_body(completion_id: str, created: int, model: str, content: str, usage: dict[str, int]) -> bytes:
    """A whole (non-streamed) chat completion, shaped like OpenAI's."""
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )


def _answer(body: dict[str, Any]) -> tuple[str, int]:
    """Deterministic content and prompt tokens.

    Content is "echo: " + the last user message, the whole string cut to 200 characters, so
    tests can assert on it and responses stay tiny however large the prompt.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    last_user = ""
    prompt_tokens = 0
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        text = _text_of(msg.get("content"))
        prompt_tokens += _count_tokens(text)
        if msg.get("role") == "user":
            last_user = text
    return ("echo: " + last_user)[:MAX_CONTENT_CHARS], prompt_tokens


def _stream_events(
    completion_id: str,
    created: int,
    model: str,
    content: str,
    usage: dict[str, int],
    include_usage: bool,
) -> list[bytes]:
    """SSE events shaped like OpenAI's: role on the first chunk, finish_reason on the last, then
    (with include_usage) a chunk with empty choices and usage, then `[DONE]`.

    As OpenAI does, every chunk carries `"usage": null` when usage was requested.
    """
    step = max(1, -(-len(content) // STREAM_PIECES))
    pieces = [content[i : i + step] for i in range(0, len(content), step)] or [""]

    def event(choices: list[dict[str, Any]], usage_value: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage_value
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": pieces[0]}, None))]
    events += [event(choice({"content": p}, None)) for p in pieces[1:]]
    events.append(event(choice({}, "stop")))
    if include_usage:
        events.append(event([], usage))
    events.append(_DONE_EVENT)
    return events
