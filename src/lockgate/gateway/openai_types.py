"""The chat completions request as clients send it, validated into one typed value.

Unknown fields are accepted and ignored (SDKs add new ones all the time); values Lockgate cannot
honour (n > 1, image parts) are refused with a message that says so, rather than silently dropped.
Types are strict, as OpenAI's are: `"max_tokens": "10"` is a 400, not a quiet conversion.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lockgate.errors import InvalidRequest


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise InvalidRequest(
                    f"Content parts of type '{part.get('type')}' are not supported; send text parts only.",
                    param="messages",
                )
            if not isinstance(part.get("text"), str):
                raise InvalidRequest("A text content part needs a string `text`.", param="messages")
            parts.append(part["text"])
        return "".join(parts)


class LockgateExtension(BaseModel):
    """Lockgate's own request fields, under `lockgate` so they never clash with OpenAI's."""

    model_config = ConfigDict(extra="forbid", strict=True)
    context: list[str] | None = Field(default=None, description="Grounding context for the answer.")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    response_format: ResponseFormat | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    lockgate: LockgateExtension | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse_chat_request(body: bytes) -> ChatRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON ({exc}). Send a JSON object with `model` and `messages`.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object with `model` and `messages`.", code="invalid_json")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = _param_path(err["loc"])
        if err["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        elif param == "n":
            message = "Only n=1 is supported; send one request per completion you need."
        else:
            message = f"Invalid value for '{param}': {err['msg']}."
        code = "missing_required_parameter" if err["type"] == "missing" else "invalid_value"
        raise InvalidRequest(message, param=param, code=code) from None


def _param_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[dict[str,any]]", "list[str]"):
            continue  # union member names pydantic adds to the location
        else:
            out += ("." if out else "") + str(part)
    return out
