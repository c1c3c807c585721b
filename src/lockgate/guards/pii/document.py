"""The text one `find_pii` call works on, shared by every detector, and the shape of a detector hit.

`Doc` computes what several detectors need (the lower-cased text, the digit count, the words just
before a candidate) once and lazily, and records what the stronger detectors already found so the
weaker ones (phones) can skip it.
"""

from __future__ import annotations

import bisect
import re

# (start, end, label, score): what each detector yields.
Hit = tuple[int, int, str, float]


class Doc:
    """The text plus lazily computed helpers shared by the detectors of one call."""

    __slots__ = ("text", "_lower", "n_digits", "taken")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None
        self.n_digits = sum(map(text.count, "0123456789"))
        # Sorted (start, end) of what the stronger detectors already found.
        self.taken: list[tuple[int, int]] = []

    @property
    def lower(self) -> str:
        if self._lower is None:
            lower = self.text.lower()
            if "\\" in lower:
                # Escaped line breaks and tabs ("\\n") separate words like real ones do.
                lower = lower.replace("\\n", "  ").replace("\\t", "  ").replace("\\r", "  ")
            self._lower = lower
        return self._lower

    def before(self, start: int, width: int = 40) -> str:
        return self.lower[max(0, start - width) : start]

    def after(self, end: int, width: int = 16) -> str:
        return self.lower[end : end + width]

    def overlaps_taken(self, start: int, end: int) -> bool:
        taken = self.taken
        if not taken:
            return False
        i = bisect.bisect_right(taken, (start, end))
        if i > 0 and taken[i - 1][1] > start:
            return True
        return i < len(taken) and taken[i][0] < end


def any_in(text: str, needles: tuple[str, ...]) -> bool:
    for needle in needles:  # a plain loop: cheaper than any() over a generator on short texts
        if needle in text:
            return True
    return False


def has_word(pattern: re.Pattern[str], window: str) -> bool:
    return pattern.search(window) is not None
