"""Credentials in text: cloud keys, private keys and tokens, by pattern and by entropy.

Known formats are matched exactly (their prefixes make false positives rare). Anything else that
is assigned to a name like `password` or `api_key` is flagged only when it looks random (Shannon
entropy), so "password: see the wiki" passes and "password: hG7#kq9!Lz2@pW" does not.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from lockgate.guards.base import Action, GuardContext, Span, Verdict

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PRIVATE_KEY", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,8000}?-----END (?:[A-Z]+ )?"
                               r"PRIVATE KEY(?: BLOCK)?-----|-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----")),
    ("AWS_ACCESS_KEY", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("AWS_SECRET_KEY", re.compile(r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[:=]\s*['\"]?([A-Za-z0-9/+]{40})\b")),
    ("GITHUB_TOKEN", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255})\b")),
    ("GITLAB_TOKEN", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b")),
    ("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("STRIPE_KEY", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("GOOGLE_API_KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("OPENAI_KEY", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}\b")),
    ("ANTHROPIC_KEY", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{32,}\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b")),
    ("CONNECTION_STRING", re.compile(r"\b(?:postgres(?:ql)?|mysql|mongodb(?:\+srv)?|redis|amqp)://[^\s:/@]+:[^\s@/]{3,}@")),
)

# A cheap substring test before each pattern: most text contains none of these, and `in` is far
# faster than a regex scan. Matched on the casefolded text.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "PRIVATE_KEY": ("private key",),
    "AWS_ACCESS_KEY": ("akia", "asia", "abia", "acca"),
    "AWS_SECRET_KEY": ("aws",),
    "GITHUB_TOKEN": ("gh", "github_pat_"),
    "GITLAB_TOKEN": ("glpat-",),
    "SLACK_TOKEN": ("xox",),
    "STRIPE_KEY": ("_live_", "_test_"),
    "GOOGLE_API_KEY": ("aiza",),
    "OPENAI_KEY": ("sk-",),
    "ANTHROPIC_KEY": ("sk-ant-",),
    "JWT": ("eyj",),
    "CONNECTION_STRING": ("://",),
}
_ASSIGNMENT_ANCHORS = ("pass", "pwd", "secret", "key", "token")

_ASSIGNMENT = re.compile(
    r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|token|client[_-]?secret)"
    r"\b\s*[:=]\s*['\"]?([^\s'\"]{12,200})"
)
MIN_ENTROPY_BITS = 3.5


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def find_secrets(text: str) -> list[Span]:
    spans: list[Span] = []
    folded = text.casefold()
    for label, pattern in _PATTERNS:
        if not any(anchor in folded for anchor in _ANCHORS[label]):
            continue
        for m in pattern.finditer(text):
            start, end = (m.start(1), m.end(1)) if m.lastindex else (m.start(), m.end())
            spans.append(Span(start, end, label))
    if not any(anchor in folded for anchor in _ASSIGNMENT_ANCHORS):
        return _without_overlaps(spans)
    for m in _ASSIGNMENT.finditer(text):
        value = m.group(1)
        entropy = shannon_entropy(value)
        if entropy >= MIN_ENTROPY_BITS:
            spans.append(Span(m.start(1), m.end(1), "GENERIC_SECRET", score=min(1.0, entropy / 5)))
    return _without_overlaps(spans)


def _without_overlaps(spans: list[Span]) -> list[Span]:
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept


class SecretsGuard:
    name = "secrets"

    def __init__(self, action: Action = Action.BLOCK) -> None:
        self.action = action

    def check(self, text: str, context: GuardContext) -> Verdict:
        spans = find_secrets(text)
        if not spans:
            return Verdict(self.name, Action.ALLOW)
        kinds = Counter(s.label for s in spans)
        reason = "found " + ", ".join(f"{k}×{n}" for k, n in sorted(kinds.items()))
        return Verdict(self.name, self.action, 1.0, reason, tuple(spans))
