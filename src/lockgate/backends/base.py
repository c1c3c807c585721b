"""The one small interface every backend implements, and the values that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FailureKind = Literal[
    "connect", "timeout", "first_token_timeout", "http_status", "malformed", "stream_cut", "circuit_open", "internal"
]


class BackendFailure(Exception):
    """One failed attempt. `retryable` says whether the same backend may succeed if asked again."""

    def __init__(self, kind: FailureKind, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class BackendCall:
    """A chat request as a backend sees it: the release's prompt already applied."""

    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str


@dataclass
class StreamDelta:
    """A piece of a streamed answer. The last one carries `finish_reason`; usage may come with it."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    async def complete(self, call: BackendCall, *, timeout_s: float) -> Completion:
        """One attempt; raises BackendFailure."""
        ...

    def stream(self, call: BackendCall, *, first_token_timeout_s: float) -> AsyncIterator[StreamDelta]:
        """One attempt as a stream; raises BackendFailure from the iterator."""
        ...

    def is_ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
