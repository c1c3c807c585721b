"""`find_pii`: runs the detectors that can apply, then keeps the best non-overlapping hits.

Detectors run in order of strength, each only when the text passes its cheap pre-test (enough digits,
a wanted label), and one that fails on odd input is skipped rather than raised. Overlaps are resolved
by label priority, then length, then position.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from lockgate.guards.base import Span
from lockgate.guards.pii.document import Doc, Hit
from lockgate.guards.pii.entities import DEFAULT_ENTITIES, normalize_entities
from lockgate.guards.pii.names_addresses import find_addresses, find_persons
from lockgate.guards.pii.phones import find_phones
from lockgate.guards.pii.structured import find_cards, find_emails, find_ibans, find_ips, find_national_ids, find_ssns

__all__ = ["find_pii"]


_normalize_cached = lru_cache(maxsize=64)(normalize_entities)


_PRIORITY = {
    "EMAIL": 100,
    "IBAN": 95,
    "IT_FISCAL_CODE": 92,
    "CREDIT_CARD": 90,
    "UK_NINO": 88,
    "ES_NIF": 88,
    "UK_NHS": 86,
    "IN_AADHAAR": 86,
    "US_SSN": 85,
    "US_ITIN": 85,
    "IP_ADDRESS": 80,
    "PHONE": 60,
    "STREET_ADDRESS": 40,
    "PERSON": 30,
}


@dataclass(frozen=True)
class _Detector:
    labels: frozenset[str]
    run: Callable[[Doc, frozenset[str]], Iterable[Hit]]
    min_digits: int = 1  # skipped when the text has fewer digits than this
    strong: bool = True  # later (weaker) detectors skip what this one found


_DETECTORS: tuple[_Detector, ...] = (
    _Detector(frozenset({"EMAIL"}), lambda d, w: find_emails(d), min_digits=0),
    _Detector(frozenset({"CREDIT_CARD"}), lambda d, w: find_cards(d), min_digits=12),
    _Detector(frozenset({"IBAN"}), lambda d, w: find_ibans(d), min_digits=4),
    _Detector(frozenset({"US_SSN", "US_ITIN"}), lambda d, w: find_ssns(d, "US_SSN" in w, "US_ITIN" in w), min_digits=9),
    _Detector(frozenset({"IP_ADDRESS"}), lambda d, w: find_ips(d), min_digits=2),
    _Detector(
        frozenset({"UK_NINO", "UK_NHS", "ES_NIF", "IT_FISCAL_CODE", "IN_AADHAAR"}),
        lambda d, w: find_national_ids(d, w),
        min_digits=6,
    ),
    _Detector(frozenset({"PHONE"}), lambda d, w: find_phones(d), min_digits=6, strong=False),
    _Detector(frozenset({"STREET_ADDRESS"}), lambda d, w: find_addresses(d), strong=False),
    _Detector(frozenset({"PERSON"}), lambda d, w: find_persons(d), min_digits=0, strong=False),
)


def _resolve(hits: list[Hit]) -> list[Span]:
    """Keep the best non-overlapping hits: higher priority first, then longer, then earlier."""
    if not hits:
        return []
    if len(hits) == 1:
        s, e, label, score = hits[0]
        return [Span(s, e, label, score)]
    hits.sort(key=lambda h: (-_PRIORITY.get(h[2], 0), -(h[1] - h[0]), h[0]))
    taken: list[tuple[int, int]] = []  # sorted by start, non-overlapping
    chosen: list[Hit] = []
    for h in hits:
        s, e = h[0], h[1]
        if e <= s:
            continue
        i = bisect.bisect_left(taken, (s, e))
        if i > 0 and taken[i - 1][1] > s:
            continue
        if i < len(taken) and taken[i][0] < e:
            continue
        taken.insert(i, (s, e))
        chosen.append(h)
    chosen.sort(key=lambda h: h[0])
    return [Span(s, e, label, score) for s, e, label, score in chosen]


def find_pii(text: str, entities: frozenset[str] | None = None) -> list[Span]:
    """Non-overlapping PII spans in `text`, sorted by start. Never raises."""
    if not isinstance(text, str) or not text:
        return []
    try:
        wanted = (
            _normalize_cached(entities)
            if entities is None or isinstance(entities, frozenset)
            else (normalize_entities(entities))
        )
    except Exception:  # noqa: BLE001 - a bad entities argument must not break a guard
        wanted = DEFAULT_ENTITIES
    if not wanted:
        return []
    doc = Doc(text)
    if doc.n_digits == 0 and "@" not in text and "PERSON" not in wanted:
        return []
    hits: list[Hit] = []
    for det in _DETECTORS:
        if doc.n_digits < det.min_digits or not (det.labels & wanted):
            continue
        if not det.strong and hits and not doc.taken:
            doc.taken = sorted((h[0], h[1]) for h in hits)
        try:
            for h in det.run(doc, wanted):
                if h[2] in wanted:
                    hits.append(h)
        except Exception:  # noqa: BLE001, S112 - one detector failing on odd input must not hide the rest
            continue
    try:
        return _resolve(hits)
    except Exception:  # noqa: BLE001
        return []
