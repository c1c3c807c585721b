"""Redaction with stable placeholders, and restoring the originals in the answer.

Within one request the same value always becomes the same placeholder (`<EMAIL_1>` every time
alice@example.com appears), so the model can still reason about "the same person" and the answer's
placeholders can be put back for the client when the policy says `restore: true`. The mapping
lives only in memory for the one request; it is never stored or traced.

Two things keep restoring from rewriting what the user actually wrote: a placeholder that already
occurs in a redacted text (in any of the forms `restore` accepts) is never handed out, and `restore`
replaces in one pass, so an original that itself looks like a placeholder is not expanded again.
`restore` also accepts what models do to placeholders: a space inside the brackets, lower case,
HTML-escaped (`&lt;EMAIL_1&gt;`) or backslash-escaped (`\\<EMAIL_1\\>`) brackets.
"""

from __future__ import annotations

import re
from collections import Counter

from lockgate.guards.base import Span

# `<LABEL_n>` as handed out, and the forms models turn it into. The label is matched lazily and the
# character classes cannot cross a bracket, so the cost stays linear in the text.
_PLACEHOLDER = re.compile(r"(?:<|&lt;|\\<)[ ]?([A-Za-z][A-Za-z0-9_]*?)_([0-9]+)[ ]?(?:>|&gt;|\\>)")


class Placeholders:
    """One request's placeholders: `redact` the prompt, then `restore` the model's answer."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        # Placeholders found in the texts given to `redact`: never handed out.
        self._reserved: set[str] = set()

    def __len__(self) -> int:
        return len(self._originals)

    @property
    def mapping(self) -> dict[str, str]:
        """A copy of placeholder -> original for what this request redacted."""
        return dict(self._originals)

    def placeholder_for(self, label: str, value: str) -> str:
        key = (label, value)
        if key not in self._by_value:
            n = self._counts[label] + 1
            while f"<{label}_{n}>" in self._reserved or f"<{label}_{n}>" in self._originals:
                n += 1
            self._counts[label] = n
            placeholder = f"<{label}_{n}>"
            self._by_value[key] = placeholder
            self._originals[placeholder] = value
        return self._by_value[key]

    def redact(self, text: str, spans: list[Span]) -> str:
        """Replaces each span (non-overlapping after merging) with its placeholder.

        Spans outside `text` or empty are ignored. A placeholder that already occurs in `text` is
        not handed out, so restoring the answer cannot turn the user's own `<EMAIL_1>` into a value.
        """
        merged = _merge(spans, len(text))
        if not merged:
            return text
        self._reserved.update(_placeholders_in(text))
        out, cursor = [], 0
        for span in merged:
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
        """Puts originals back for every placeholder this request made, in one pass; others are left as they are."""
        if not self._originals or ("<" not in text and "&lt;" not in text):
            return text
        originals = self._originals

        def sub(m: re.Match[str]) -> str:
            return originals.get(f"<{m.group(1).upper()}_{int(m.group(2))}>", m.group(0))

        return _PLACEHOLDER.sub(sub, text)


def mask(text: str, spans: list[Span]) -> str:
    """Irreversible redaction for answers: `<EMAIL_REDACTED>`; nothing to restore."""
    out, cursor = [], 0
    for span in _merge(spans, len(text)):
        out.append(text[cursor : span.start])
        out.append(f"<{_label(span.label)}_REDACTED>")
        cursor = span.end
    out.append(text[cursor:])
    return "".join(out)


def _placeholders_in(text: str) -> set[str]:
    """Every placeholder `restore` would recognise in `text`, in its canonical `<LABEL_n>` form."""
    if "<" not in text and "&lt;" not in text:
        return set()
    return {f"<{m.group(1).upper()}_{int(m.group(2))}>" for m in _PLACEHOLDER.finditer(text)}


def _label(label: str) -> str:
    """A label usable in a placeholder `restore` recognises: upper case, `[A-Z0-9_]`, starting with a letter."""
    cleaned = re.sub(r"[^A-Z0-9_]", "_", label.upper())
    if not cleaned[:1].isalpha():
        cleaned = "PII_" + cleaned if cleaned else "PII"
    return cleaned


def _merge(spans: list[Span], length: int) -> list[Span]:
    """Sorted, with spans outside the text or empty dropped and overlaps resolved in favour of the
    earlier, then longer, span (extended to cover both)."""
    merged: list[Span] = []
    valid = (s for s in spans if 0 <= s.start < s.end <= length)
    for span in sorted(valid, key=lambda s: (s.start, -(s.end - s.start))):
        if merged and span.start < merged[-1].end:
            if span.end > merged[-1].end:
                last = merged[-1]
                merged[-1] = Span(last.start, span.end, last.label, last.score)
            continue
        merged.append(span)
    return merged
