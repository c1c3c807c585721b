"""The `pii` guard: `find_pii` wrapped in the guard interface the pipeline calls.

It checks the configured entity names up front (an unknown name is a configuration error, not a
silent no-op) and turns the spans into a verdict; what to do with them (redact with placeholders,
mask, block) is the pipeline's job.
"""

from __future__ import annotations

from lockgate.guards.base import Action, GuardContext, Verdict
from lockgate.guards.pii.detect import find_pii
from lockgate.guards.pii.entities import ALL_ENTITIES, normalize_entities

__all__ = ["PiiGuard"]


class PiiGuard:
    """Finds PII and asks the pipeline to act on it (redact by default)."""

    name = "pii"

    def __init__(self, action: Action = Action.REDACT, entities: frozenset[str] | None = None) -> None:
        if entities is not None:
            unknown = sorted(str(e) for e in entities if not normalize_entities([e]))
            if unknown:
                known = ", ".join(sorted(ALL_ENTITIES))
                raise ValueError(f"unknown PII entities: {', '.join(unknown)}; known: {known}")
        self.action = Action(action)
        self.entities = normalize_entities(entities)

    def check(self, text: str, context: GuardContext | None = None) -> Verdict:
        spans = find_pii(text, self.entities)
        if not spans:
            return Verdict(guard=self.name, action=Action.ALLOW, score=0.0, reason="no PII found")
        counts: dict[str, int] = {}
        for s in spans:
            counts[s.label] = counts.get(s.label, 0) + 1
        reason = "found " + ", ".join(f"{label}×{n}" for label, n in counts.items())
        return Verdict(
            guard=self.name,
            action=self.action,
            score=max(s.score for s in spans),
            reason=reason,
            spans=tuple(spans),
        )
