"""Grounding: are the answer's claims supported by the context the request supplied?

Context comes from the request: system and tool messages, or the `lockgate.context` extension
field; and from the release's retrieval, whose retrieved chunks are added for each request. Each
sentence of the answer is a claim; its content words and numbers are looked up in the context
(words compared on their first five letters, a cheap stemmer that works across English,
German, French, Spanish and Italian inflections). A sentence is unsupported when fewer than half of
its content words, or any of its numbers, appear in the context. Lexical, fast and explainable; it
catches invented facts and figures, not subtle paraphrase errors.
"""

from __future__ import annotations

import re

from lockgate.guards.base import Action, GuardContext, Span, Verdict

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]{3,}")
STOPWORDS = frozenset(
    """the and for are but not you all any can had her was one our out has have this that with from they will
    would there their what about which when make like time just know take into your some could them than then
    now only its also after use how our well way even want because these give most does did doing been being
    were very should shall may might must here such each other more less much many who whom whose where why
    der die das und ist nicht ein eine mit für von auf den dem des sie wir ich les des une est pas pour que qui
    dans avec sur par los las una por para con que del como più che non per con una gli della sono""".split()
)
STEM = 5


def _stem(word: str) -> str:
    return word.casefold()[:STEM]


def _content(sentence: str) -> tuple[set[str], set[str]]:
    words, numbers = set(), set()
    for token in _TOKEN.findall(sentence):
        if token[0].isdigit():
            numbers.add(token.replace(",", ""))
        elif token.casefold() not in STOPWORDS:
            words.add(_stem(token))
    return words, numbers


class GroundingGuard:
    name = "grounding"

    def __init__(self, action: Action = Action.ALLOW, min_support: float = 0.5, min_words: int = 3) -> None:
        self.action = action
        self.min_support = min_support
        self.min_words = min_words

    def check(self, text: str, context: GuardContext) -> Verdict:
        if not context.grounding_context:
            return Verdict(self.name, Action.ALLOW, reason="no context supplied")
        known_words, known_numbers = _content(" ".join(context.grounding_context))
        unsupported: list[Span] = []
        claims = 0
        for match in _SENTENCE.finditer(text):
            words, numbers = _content(match.group())
            if len(words) < self.min_words and not numbers:
                continue  # greetings and fragments are not claims
            claims += 1
            support = len(words & known_words) / len(words) if words else 1.0
            invented_numbers = numbers - known_numbers
            if support < self.min_support or invented_numbers:
                unsupported.append(Span(match.start(), match.end(), "UNSUPPORTED_CLAIM", score=1 - support))
        if not unsupported:
            return Verdict(self.name, Action.ALLOW, 0.0, f"{claims} claim(s) supported by the context")
        score = len(unsupported) / max(1, claims)
        return Verdict(self.name, self.action, score,
                       f"{len(unsupported)} of {claims} claim(s) not supported by the supplied context",
                       tuple(unsupported))
