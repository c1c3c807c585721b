"""The one small guard interface and the values it returns.

A guard looks at one text and says what it found as a `Verdict`: an action, a score, a reason a
person can read, and the spans it found. Guards decide; the pipeline acts (redacts, blocks,
regenerates, falls back or holds), so a new check is one new class and the pipeline never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Action(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"
    REGENERATE = "regenerate"
    FALLBACK = "fallback"
    HOLD = "hold"

    @property
    def severity(self) -> int:
        """How strongly an action overrides others when verdicts are combined."""
        return _SEVERITY[self]


_SEVERITY = {
    Action.ALLOW: 0,
    Action.REDACT: 1,
    Action.REGENERATE: 2,
    Action.FALLBACK: 3,
    Action.HOLD: 4,
    Action.BLOCK: 5,
}


@dataclass(frozen=True)
class Span:
    """A finding inside the text: [start, end) character offsets and what it is (e.g. EMAIL)."""

    start: int
    end: int
    label: str
    score: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        # Never the matched text itself: traces must not re-leak what a guard found.
        return {"start": self.start, "end": self.end, "label": self.label, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Verdict:
    guard: str
    action: Action
    score: float = 0.0
    reason: str = ""
    spans: tuple[Span, ...] = field(default_factory=tuple)
    # A guard that rewrites the text (Unicode hygiene) gives the rewritten text here; redaction of
    # spans into placeholders is the pipeline's job, not the guard's.
    text: str | None = None

    @property
    def tripped(self) -> bool:
        return self.action is not Action.ALLOW

    def as_dict(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "action": self.action.value,
            "score": round(self.score, 4),
            "reason": self.reason,
            "spans": [s.as_dict() for s in self.spans],
        }


class Guard(Protocol):
    """A check. `check` must be fast, pure and never raise on any text."""

    name: str

    def check(self, text: str, context: GuardContext) -> Verdict: ...


@dataclass
class GuardContext:
    """What a guard may need beyond the text: the release's system prompt, supplied grounding context."""

    system_prompt: str | None = None
    canary: str | None = None
    grounding_context: list[str] = field(default_factory=list)
    output_schema: dict[str, Any] | None = None
