"""The PII entity names Lockgate knows, and the other names people use for them.

Kept apart from the detectors: both `find_pii` (which entities to look for) and `PiiGuard` (which
refuses unknown names in a policy) resolve names here.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ALL_ENTITIES", "DEFAULT_ENTITIES", "normalize_entities"]


ALL_ENTITIES: frozenset[str] = frozenset(
    {
        "EMAIL",
        "PHONE",
        "CREDIT_CARD",
        "IBAN",
        "US_SSN",
        "US_ITIN",
        "IP_ADDRESS",
        "UK_NINO",
        "UK_NHS",
        "ES_NIF",
        "IT_FISCAL_CODE",
        "IN_AADHAAR",
        "STREET_ADDRESS",
        "PERSON",
    }
)
DEFAULT_ENTITIES = ALL_ENTITIES

# Other names people (and Presidio configs) use for the same things.
_ALIASES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IBAN_CODE": "IBAN",
    "SSN": "US_SSN",
    "ITIN": "US_ITIN",
    "IP": "IP_ADDRESS",
    "NINO": "UK_NINO",
    "NHS": "UK_NHS",
    "ES_NIE": "ES_NIF",
    "ADDRESS": "STREET_ADDRESS",
    "NAME": "PERSON",
}


def normalize_entities(entities: Iterable[str] | None) -> frozenset[str]:
    """Upper-case, resolve aliases; unknown names are dropped (see `PiiGuard` for the strict check)."""
    if entities is None:
        return DEFAULT_ENTITIES
    out = set()
    for name in entities:
        key = str(name).strip().upper()
        key = _ALIASES.get(key, key)
        if key in ALL_ENTITIES:
            out.add(key)
    return frozenset(out)
