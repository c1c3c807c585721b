"""Unicode hygiene: invisible characters, bidirectional overrides and mixed-script look-alikes.

Attackers hide instructions in zero-width characters, reorder text with bidi controls ("Trojan
Source") and spell blocked words with Cyrillic or Greek look-alikes. This guard removes the first
two (they carry no meaning in a prompt), applies NFKC (full-width and compatibility forms become
plain letters), and reports words that mix Latin with look-alike scripts. It rewrites rather than
blocks by default: the cleaned text is what every later guard and the model see.
"""

from __future__ import annotations

import re
import unicodedata

from lockgate.guards.base import Action, GuardContext, Span, Verdict

# Zero-width and other invisible format characters, except ZWJ (U+200D), which emoji sequences
# need, and the BOM only at position 0 (handled by stripping all of them: a BOM inside text is noise).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u200c\u200e\u200f\u2060-\u2064"
    "\u206a-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_WORD = re.compile(r"\w{3,}")
# Scripts whose letters are commonly confused with Latin ones.
_LOOKALIKE_SCRIPTS = ("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


class UnicodeGuard:
    name = "unicode"

    def __init__(self, action: Action = Action.REDACT, mixed_script_action: Action = Action.ALLOW) -> None:
        self.action = action
        self.mixed_script_action = mixed_script_action

    def check(self, text: str, context: GuardContext) -> Verdict:
        if text.isascii():
            # Nothing invisible, nothing NFKC would change, no look-alike letters: the common case.
            return Verdict(self.name, Action.ALLOW)
        spans = [Span(m.start(), m.end(), "INVISIBLE") for m in _INVISIBLE.finditer(text)]
        spans += [Span(m.start(), m.end(), "BIDI_CONTROL") for m in _BIDI.finditer(text)]
        cleaned = sanitize(text)
        mixed = mixed_script_words(cleaned)
        if not spans and cleaned == text and not mixed:
            return Verdict(self.name, Action.ALLOW)
        parts = []
        if spans:
            parts.append(f"removed {len(spans)} invisible or bidi control character(s)")
        if cleaned != text and not spans:
            parts.append("normalised compatibility characters (NFKC)")
        if mixed:
            parts.append(f"{len(mixed)} word(s) mix Latin with look-alike letters")
        action = self.action
        if mixed and self.mixed_script_action.severity > action.severity:
            action = self.mixed_script_action
        spans.sort(key=lambda s: s.start)
        return Verdict(self.name, action, score=1.0, reason="; ".join(parts), spans=tuple(spans), text=cleaned)


def sanitize(text: str) -> str:
    """Invisible and bidi controls out, then NFKC. Idempotent."""
    return unicodedata.normalize("NFKC", _BIDI.sub("", _INVISIBLE.sub("", text)))


def mixed_script_words(text: str) -> list[str]:
    """Words written mostly in Latin letters with some look-alike letters from another script."""
    found = []
    for match in _WORD.finditer(text):
        word = match.group()
        if word.isascii():
            continue
        has_latin = has_other = False
        for ch in word:
            if ch.isascii():
                has_latin = has_latin or ch.isalpha()
                continue
            name = unicodedata.name(ch, "")
            if name.startswith("LATIN"):
                has_latin = True
            elif name.startswith(_LOOKALIKE_SCRIPTS):
                has_other = True
        if has_latin and has_other:
            found.append(word)
    return found
