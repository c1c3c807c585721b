"""What drift looks at in one request, read from a trace or from a suite case.

A trace always has token counts, the guards' verdicts and the outcome; its prompt and output only
when the route keeps content (`trace_content: full`). A suite case has its prompt and nothing else.
So every feature is optional: an observation says what it knows, and a feature missing from either
window is reported as unavailable rather than compared against nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockgate.guards.refusal import find_refusal

REFUSAL, ANSWER = "refusal", "answer"


@dataclass(frozen=True)
class Observation:
    prompt: str | None = None  # the user's messages, as the input guards left them
    output: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    guard_action: str | None = None
    guard_scores: dict[str, float] = field(default_factory=dict)  # "input.injection" -> highest score
    refused: bool | None = None
    confidence: float | None = None


def user_text(messages: Iterable[Any]) -> str | None:
    """The user's part of a conversation: what the application's users, not its prompt authors, wrote."""
    parts = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if role == "user" and isinstance(content, str):
            parts.append(content)
    return "\n".join(parts) if parts else None


def from_trace(trace: dict[str, Any]) -> Observation:
    has_content = trace.get("content_mode") == "full"
    prompt = user_text(trace.get("prompt") or []) if has_content else None
    output = trace.get("output") if has_content and isinstance(trace.get("output"), str) else None
    answered = trace.get("status") == 200
    scores: dict[str, float] = {}
    guards = trace.get("guards") or {}
    for stage in ("input", "output"):
        for verdict in guards.get(stage) or []:
            name, score = verdict.get("guard"), verdict.get("score")
            if isinstance(name, str) and isinstance(score, int | float):
                key = f"{stage}.{name}"
                scores[key] = max(scores.get(key, 0.0), float(score))
    return Observation(
        prompt=prompt,
        output=output if answered else None,
        prompt_tokens=_positive(trace.get("prompt_tokens")),
        completion_tokens=_positive(trace.get("completion_tokens")) if answered else None,
        guard_action=trace.get("guard_action") if isinstance(trace.get("guard_action"), str) else None,
        guard_scores=scores,
        refused=_refused(output if answered else None, scores),
        confidence=float(trace["confidence"]) if isinstance(trace.get("confidence"), int | float) else None,
    )


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


def _refused(output: str | None, scores: dict[str, float]) -> bool | None:
    """From the output text when the trace has it; else from the refusal guard's verdict, if it ran."""
    if output is not None:
        return find_refusal(output) is not None
    if "output.refusal" in scores:
        return scores["output.refusal"] >= 0.5
    return None


def from_case(messages: Sequence[Any]) -> Observation:
    """A suite case: only its prompt is known (it has not been answered yet)."""
    return Observation(prompt=user_text(messages) or "")


# -- features -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Literal["numeric", "categorical"]
    description: str
    value: Callable[[Observation], Any]  # None where the observation does not have it


def _length(text: str | None) -> float | None:
    return float(len(text)) if text is not None else None


def _refusal_label(o: Observation) -> str | None:
    return None if o.refused is None else (REFUSAL if o.refused else ANSWER)


FIXED_FEATURES: tuple[Feature, ...] = (
    Feature("prompt_chars", "numeric", "characters in the user's messages", lambda o: _length(o.prompt)),
    Feature("prompt_tokens", "numeric", "prompt tokens (the backend's count)", lambda o: o.prompt_tokens),
    Feature("output_chars", "numeric", "characters in the answer", lambda o: _length(o.output)),
    Feature("completion_tokens", "numeric", "completion tokens", lambda o: o.completion_tokens),
    Feature("refusal", "categorical", "answer or refusal", _refusal_label),
    Feature("guard_action", "categorical", "the guards' combined action", lambda o: o.guard_action),
    Feature("confidence", "numeric", "the answer's confidence", lambda o: o.confidence),
)
# `language` and `topic` need models (a language identifier, the embedding model): see analysis.py.


def guard_features(windows: Iterable[Sequence[Observation]]) -> list[Feature]:
    """One numeric feature per guard that left a score in any window: `guard.input.injection`..."""
    names = sorted({k for observations in windows for o in observations for k in o.guard_scores})
    return [_guard_feature(k) for k in names]


def _guard_feature(key: str) -> Feature:
    stage, guard = key.split(".", 1)
    return Feature(f"guard.{key}", "numeric", f"highest score of the {guard} guard on the {stage}",
                   lambda o: o.guard_scores.get(key))


def values(feature: Feature, observations: Sequence[Observation]) -> list[Any]:
    return [v for v in (feature.value(o) for o in observations) if v is not None]
