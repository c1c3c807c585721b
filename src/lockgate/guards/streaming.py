"""Output guards on a streamed answer: sentence buffering.

The answer is released to the client a sentence at a time. Before a sentence goes out, the output
guards run over everything generated so far, so a leak that builds up across sentences (the system
prompt, a card number split by the model) is caught before its last piece is sent. Tokens wait at
most one sentence (or `max_pending_chars` when a sentence runs long).

When a guard trips mid-stream the client keeps what it already received, gets nothing more of the
answer, and the stream ends normally with `finish_reason: "content_filter"` (see
docs/configuration.md, "Guards on streamed answers"). Redactions are applied to sentences before
they are released. Answers that must be judged whole (a JSON output schema) are not released until
they are complete.
"""

from __future__ import annotations

import re

from lockgate.guards.base import GuardContext
from lockgate.guards.pipeline import GuardResult, GuardSet
from lockgate.guards.redaction import Placeholders

# End of a sentence: terminal punctuation (and closing quotes/brackets) followed by whitespace, or a
# newline. "a.b@c.com" and "3.14" are not boundaries because no whitespace follows the dot.
_BOUNDARY = re.compile(r"[.!?。！？][\"'”’)\]]*\s+|\n")
MAX_PENDING_CHARS = 400
TAIL_KEPT_CHARS = 64


class StreamGuard:
    def __init__(
        self,
        guards: GuardSet,
        context: GuardContext,
        placeholders: Placeholders | None = None,
        *,
        max_pending_chars: int = MAX_PENDING_CHARS,
    ) -> None:
        self._guards = guards
        self._context = context
        self._placeholders = placeholders if guards.restore_placeholders else None
        self._max_pending = max_pending_chars
        self._raw = ""  # everything generated so far
        self._cut = 0  # how much of _raw has been judged and released
        self._emitted = ""  # the guarded text already sent
        self.result = GuardResult("output")

    @property
    def tripped(self) -> bool:
        return self.result.stops

    @property
    def released_text(self) -> str:
        return self._emitted

    def feed(self, piece: str) -> str:
        """Takes newly generated text; returns the text that may be sent now (often empty)."""
        if self.tripped or not piece:
            return ""
        self._raw += piece
        if self._guards.needs_whole_answer:
            return ""
        cut = self._release_point()
        return self._release(cut) if cut > self._cut else ""

    def finish(self) -> str:
        """The generation ended: judges the whole answer and returns what is left to send."""
        if self.tripped:
            return ""
        return self._release(len(self._raw))

    def _release_point(self) -> int:
        pending = self._raw[self._cut :]
        ends = [m.end() for m in _BOUNDARY.finditer(pending)]
        if ends:
            return self._cut + ends[-1]
        if len(pending) > self._max_pending:
            # A very long sentence: release up to a space well before the end, keeping a tail back
            # so a value being generated (a number, an address) is not cut in half.
            space = pending.rfind(" ", 0, len(pending) - TAIL_KEPT_CHARS)
            opening = pending.rfind("<", 0, space)
            if opening >= 0 and ">" not in pending[opening:space]:
                space = pending.rfind(" ", 0, opening)  # never split a placeholder like "< EMAIL_1 >"
            if space > 0:
                return self._cut + space + 1
        return self._cut

    def _release(self, cut: int) -> str:
        guarded, result = self._guards.check_output(self._raw[:cut], self._context)
        self.result = result
        if result.stops:
            return ""
        self._cut = cut
        if self._placeholders is not None:
            guarded = self._placeholders.restore(guarded)
        # Masks replace spans inside the newly judged text, so what was sent is a prefix of `guarded`
        # (a span reaching back across a sentence boundary could only be masked from here on).
        new = guarded[len(self._emitted) :]
        self._emitted = guarded
        return new
