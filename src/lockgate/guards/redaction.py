"""Redaction with stable placeholders, and restoring the originals in the answer.

Within one request the same value always becomes the same placeholder (`<EMAIL_1>` every time
alice@example.com appears), so the model can still reason about "the same person" and the answer's
placeholders can be put back for the client when the policy says `restore: true`. The mapping
lives only in memory for the one request; it is never stored or traced.
"""

from __future__ import annotations

import re
from collections import Counter

from lockgate.guards.base import Span

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")


class Placeholders:
    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._originals)

    def placeholder_for(self, label: str, value: str) -> str:
        key = (label, value)
        if key not in self._by_value:
            self._counts[label] += 1
            placeholder = f"<{label}_{self._counts[label]}>"
            self._by_value[key] = placeholder
            self._originals[placeholder] = value
        return self._by_value[key]

    def redact(self, text: str, spans: list[Span]) -> str:
        """Replaces each span (non-overlapping after merging) with its placeholder."""
        out, cursor = [], 0
        for span in _merge(spans):
            out.append(text[cursor : span.start])
            out.append(self.placeholder_for(_label(span.label), text[span.start : span.end]))
            cursor = span.end
        out.append(text[cursor:])
        return "".join(out)

    def redact_known(self, text: str) -> str:
        """Replaces every value this request redacted with its placeholder again (e.g. before the
        answer, restored for the client, is written to a trace)."""
        for (_, value), placeholder in sorted(self._by_value.items(), key=lambda kv: -len(kv[0][1])):
            text = text.replace(value, placeholder)
        return text

    def restore(self, text: str) -> str:
        """Puts originals back for every placeholder this request made; others are left as they are."""
        if not self._originals:
            return text
        return _PLACEHOLDER.sub(lambda m: self._originals.get(m.group(0), m.group(0)), text)


def mask(text: str, spans: list[Span]) -> str:
    """Irreversible redaction for answers: `<EMAIL_REDACTED>`; nothing to restore."""
    out, cursor = [], 0
    for span in _merge(spans):
        out.append(text[cursor : span.start])
        out.append(f"<{_label(span.label)}_REDACTED>")
        cursor = span.end
    out.append(text[cursor:])
    return "".join(out)


def _label(label: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", label.upper())


def _merge(spans: list[Span]) -> list[Span]:
    """Sorted, with overlaps resolved in favour of the earlier, then longer, span."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if merged and span.start < merged[-1].end:
            if span.end > merged[-1].end:
                last = merged[-1]
                merged[-1] = Span(last.start, span.end, last.label, last.score)
            continue
        merged.append(span)
    return merged
