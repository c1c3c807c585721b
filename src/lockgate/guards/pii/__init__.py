"""PII detection for the input and output guards: precise patterns with checksums, no model.

`find_pii(text)` returns non-overlapping `Span`s sorted by start. Every detector is a compiled regular
expression that finds candidates, followed by a validator that decides: Luhn for cards, mod-97 for
IBANs, `ipaddress` for IPs, SSA rules for SSNs, check characters for national ids, and for phone
numbers a shape check plus the words just before the number ("call", "fax" vs "order", "invoice").

Precision comes before coverage: a guard that redacts order numbers and version strings gets turned
off. PERSON and STREET_ADDRESS are found only where a cue makes them near certain (a title or "my
name is" before a capitalised name; a house number before a street-type word), so most names and
addresses in free text are *not* found.

Speed: no detector runs unless the cheap character test it needs passes ('@' for emails, a digit for
numbers, ':' for IPv6), every pattern is anchored by a look-behind so it starts only at token
boundaries, and every repetition is bounded, so a 100 KB input costs linear time. `find_pii` never
raises: a detector that fails on some odd input is skipped.

The package, one idea per module:
- `entities`: the entity names and their aliases;
- `checksums`: pure validators (Luhn, mod-97, SSA rules, NIF, codice fiscale, Verhoeff, NHS, card ranges);
- `document`: the per-call text helper shared by the detectors;
- `structured`: emails, cards, IBANs, SSN/ITIN, IPs, national ids (the strong detectors);
- `phones`: phone numbers;
- `names_addresses`: PERSON and STREET_ADDRESS (cue-based);
- `detect`: `find_pii`, running the detectors and resolving overlaps;
- `guard`: `PiiGuard`.

Redacting what is found, with placeholders the answer can be restored from, is
`lockgate.guards.redaction.Placeholders`.
"""

from __future__ import annotations

from lockgate.guards.pii.detect import find_pii
from lockgate.guards.pii.entities import ALL_ENTITIES, DEFAULT_ENTITIES, normalize_entities
from lockgate.guards.pii.guard import PiiGuard

__all__ = [
    "ALL_ENTITIES",
    "DEFAULT_ENTITIES",
    "PiiGuard",
    "find_pii",
    "normalize_entities",
]
