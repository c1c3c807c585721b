"""What the gateway knows about one request as it goes through the pipeline; it becomes the trace."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lockgate.backends.base import BackendCall
from lockgate.control.assignment import Assignment
from lockgate.gateway import guarding
from lockgate.gateway.openai_types import ChatRequest
from lockgate.gateway.resilience import CallLog
from lockgate.gateway.runtime import ServingRelease
from lockgate.retrieval import Retrieved
from lockgate.store import ApiKeyRecord

JSON = "application/json"


@dataclass
class RequestState:
    """What is known about one request so far; becomes its trace."""

    request_id: str
    started: float
    created: int
    key: ApiKeyRecord | None = None
    chat: ChatRequest | None = None
    release: ServingRelease | None = None
    log: CallLog = field(default_factory=CallLog)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    ttft_ms: float | None = None
    output: str | None = None
    guarded: guarding.GuardedRequest | None = None
    assignment: Assignment | None = None
    shadow_of: str | None = None  # set on a shadow copy: the request it copies
    call: BackendCall | None = None  # as sent to the backend
    trace_context: Any = None  # the caller's OpenTelemetry context, when telemetry is on
    retrieved: Retrieved | None = None

    @property
    def route(self) -> str | None:
        return self.release.route if self.release else (self.chat.model if self.chat else None)

    @property
    def static_answer(self) -> bool:
        """The route's kill switch answers with a fixed message; no release is called."""
        return self.assignment is not None and self.assignment.static_message is not None

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def overhead_ms(self) -> float:
        return max(0.0, (self.elapsed_s() - self.log.upstream_s) * 1000)

    def headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id, "x-lockgate-overhead-ms": f"{self.overhead_ms():.3f}"}
        h["x-lockgate-release"] = self.release.release_id if self.release and not self.static_answer else "none"
        if self.assignment is not None:
            h["x-lockgate-assignment"] = self.assignment.role
        if self.guarded is not None:
            h[guarding.GUARD_ACTION_HEADER] = guarding.combined_action(self.guarded).value
        return h


def outcome_of(state: RequestState) -> str:
    """ok, fallback (a fallback link answered), or guarded (an output guard withheld or replaced it)."""
    if state.guarded is not None and state.guarded.output is not None and state.guarded.output.stops:
        return "guarded"
    return "fallback" if state.log.fallback_used else "ok"
