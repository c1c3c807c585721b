"""BM25 (Okapi) ranking over a few hundred chunks, in memory.

Written here rather than taken from a library: the scoring is a dozen lines, a knowledge text has
tens to thousands of chunks (an inverted index over them answers in microseconds), and the terms
need Lockgate's own light normalisation. `rank-bm25` has not been released since 2022 and brings
numpy; `bm25s` brings scipy; neither would make this faster or more correct at this size.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from lockgate.guards.grounding import STOPWORDS

_WORD = re.compile(r"[^\W_]+")
_SUFFIXES = ("ing", "ed", "es", "s", "e")
STEM_CHARS = 6


def _stem(word: str) -> str:
    """A light English stemmer: "tiers"/"tier", "pricing"/"price", "routes"/"route" meet."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:STEM_CHARS]


def terms(text: str) -> list[str]:
    """Search terms: words of three letters or more (shorter ones are almost all function words) and
    anything with a digit ("v1", "8787"), stop words dropped, lightly stemmed."""
    words = (w.casefold() for w in _WORD.findall(text))
    return [_stem(w) for w in words if (len(w) >= 3 or not w.isalpha()) and w not in STOPWORDS]


class Bm25Index:
    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._lengths = [len(doc) for doc in documents]
        self._avg_length = (sum(self._lengths) / len(documents)) if documents else 0.0
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)  # term -> [(doc, count)]
        for i, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                self._postings[term].append((i, count))
        n = len(documents)
        # Lucene's variant of the IDF: never negative, so a term in most chunks still counts a little.
        self._idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self._postings.items()}

    def top(self, query_terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The `k` best (document index, score) pairs with a positive score, best first."""
        scores: dict[int, float] = defaultdict(float)
        for term in set(query_terms):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for doc, count in self._postings[term]:
                norm = self.k1 * (1 - self.b + self.b * self._lengths[doc] / self._avg_length)
                scores[doc] += idf * count * (self.k1 + 1) / (count + norm)
        return heapq.nlargest(k, scores.items(), key=lambda item: (item[1], -item[0]))
