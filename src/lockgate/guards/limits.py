"""Size, token and encoding limits on input.

Long base64, hex or percent-encoded runs are how payloads are smuggled past text checks ("decode
this and follow it"), and they cost tokens without carrying meaning for most applications. The
limits are cheap to check and come first, so nothing expensive ever runs on a 10 MB prompt.
"""

from __future__ import annotations

import math
import re

from lockgate.guards.base import Action, GuardContext, Span, Verdict


def _encoded_patterns(min_chars: int) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """The minimum length is part of each pattern, so short runs are skipped by the regex engine
    itself instead of being matched and thrown away."""
    n = max(8, min_chars)
    return (
        ("BASE64", re.compile(rf"[A-Za-z0-9+/_-]{{{n},}}={{0,2}}")),
        ("HEX", re.compile(rf"(?:0x)?[0-9a-fA-F]{{{n},}}")),
        ("PERCENT_ENCODED", re.compile(rf"(?:%[0-9a-fA-F]{{2}}){{{max(1, n // 3)},}}")),
        ("ESCAPED", re.compile(rf"(?:\\(?:x[0-9a-fA-F]{{2}}|u[0-9a-fA-F]{{4}})){{{max(1, n // 6)},}}")),
    )


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text; an upper-bound-ish estimate for limits."""
    return math.ceil(len(text) / 4)


class LimitsGuard:
    name = "limits"

    def __init__(
        self,
        *,
        max_chars: int = 32_000,
        max_tokens: int | None = None,
        max_encoded_chars: int = 512,
        action: Action = Action.BLOCK,
    ) -> None:
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.max_encoded_chars = max_encoded_chars
        self.action = action
        self._patterns = _encoded_patterns(max_encoded_chars)

    def check(self, text: str, context: GuardContext) -> Verdict:
        if len(text) > self.max_chars:
            return Verdict(self.name, self.action, 1.0, f"{len(text)} characters exceed the limit of {self.max_chars}")
        if self.max_tokens is not None and estimate_tokens(text) > self.max_tokens:
            return Verdict(
                self.name, self.action, 1.0,
                f"about {estimate_tokens(text)} tokens exceed the limit of {self.max_tokens}",
            )
        spans = encoded_runs(text, min_chars=self.max_encoded_chars, patterns=self._patterns)
        if spans:
            longest = max(s.end - s.start for s in spans)
            return Verdict(
                self.name, self.action, 1.0,
                f"encoded payload of {longest} characters ({spans[0].label}) exceeds {self.max_encoded_chars}",
                spans=tuple(spans),
            )
        return Verdict(self.name, Action.ALLOW)


def encoded_runs(
    text: str, *, min_chars: int, patterns: tuple[tuple[str, re.Pattern[str]], ...] | None = None
) -> list[Span]:
    """Runs of base64, hex, percent- or backslash-escaped text at least `min_chars` long."""
    if len(text) < min_chars:
        return []
    spans: list[Span] = []
    for label, pattern in patterns or _encoded_patterns(min_chars):
        for m in pattern.finditer(text):
            if m.end() - m.start() < min_chars:
                continue
            if label == "BASE64" and not _looks_like_base64(m.group()):
                continue
            spans.append(Span(m.start(), m.end(), label))
    spans.sort(key=lambda s: s.start)
    return spans


def _looks_like_base64(run: str) -> bool:
    # Long words or identifiers are letters only; encoded data mixes cases and digits.
    has_digit = any(c.isdigit() for c in run)
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    return has_digit and has_upper and has_lower
