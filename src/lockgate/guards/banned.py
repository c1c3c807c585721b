"""Banned substrings and topics: the operator's own list of what a route must not discuss.

Topics are keyword lists (`topics: {weapons: [rifle, ammunition]}`), matched on word boundaries
and case-insensitively, so "class" does not match "ass". Deliberately simple and predictable: an
operator can read exactly why a request was refused.
"""

from __future__ import annotations

import re

from lockgate.guards.base import Action, GuardContext, Span, Verdict


class BannedGuard:
    name = "banned"

    def __init__(
        self,
        *,
        substrings: list[str] | None = None,
        topics: dict[str, list[str]] | None = None,
        action: Action = Action.BLOCK,
    ) -> None:
        self.action = action
        self._substrings = [(s, s.casefold()) for s in substrings or [] if s]
        self._topics = [
            (topic, re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words if w) + r")\b", re.IGNORECASE))
            for topic, words in (topics or {}).items()
            if any(words)
        ]

    def check(self, text: str, context: GuardContext) -> Verdict:
        folded = text.casefold()
        spans: list[Span] = []
        reasons: list[str] = []
        for original, needle in self._substrings:
            at = folded.find(needle)
            if at >= 0 and len(folded) == len(text):  # casefold kept offsets: spans are exact
                spans.append(Span(at, at + len(needle), "BANNED_SUBSTRING"))
                reasons.append(f"banned substring '{original}'")
            elif at >= 0:
                reasons.append(f"banned substring '{original}'")
        for topic, pattern in self._topics:
            match = pattern.search(text)
            if match:
                spans.append(Span(match.start(), match.end(), f"TOPIC:{topic}"))
                reasons.append(f"banned topic '{topic}'")
        if not reasons:
            return Verdict(self.name, Action.ALLOW)
        return Verdict(self.name, self.action, 1.0, "; ".join(reasons), tuple(sorted(spans, key=lambda s: s.start)))
