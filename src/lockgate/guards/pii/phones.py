"""Phone number detection: the hardest entity to tell apart from order numbers, dates and amounts.

A permissive pattern proposes runs of digit groups; `_phone_shape` scores each from its groups and
separators (a leading "+", NANP and trunk-0 shapes, dates and decimals rejected) and, only when the shape
is not decisive, from the nearest keyword before it ("call", "fax" vs "order", "invoice"). A candidate
that fails as a whole is tried again as runs of its space-separated chunks, within a fixed budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from lockgate.guards.pii.document import Doc, Hit

# For phone numbers the nearest keyword before the number decides: "call me on" vs "order no".
_PHONE_KEYWORDS = re.compile(
    r"\b(?:(?P<pos>phone|phones|telephone|tel|tél|telefon|mob|mobile|cell|cellphone|fax|sms|text|txt|"
    r"whatsapp|signal|viber|call|calls|called|calling|ring|dial|reach|reached|contact|hotline|landline|helpline|"
    r"message|messages|messaging|voicemail|answer|answering|"
    r"office|desk|home|work|direct)"
    r"|(?P<neg>orders?|invoices?|inv|ref|reference|tickets?|tracking|track|id|ids|acct|accounts?|iban|po|sku|"
    r"serial|transactions?|txn|confirmation|case|booking|receipt|version|ver|build|isbn|issn|zip|postal|"
    r"postcode|patent|model|part|item|pin|otp|code|amount|total|price|balance|card|passport|licen[cs]e|"
    r"routing|swift|ssn|social|policy|claim|badge|ip|port|pid|uid|"
    r"hash|commit|sha|checksum|barcode|upc|ean|vin|lot|batch|sn|s/n|no of|qty|quantity|count|year|years|"
    r"page|pages|chapter|section|table|row|step|score|scores|room|flight|train|seat|gate|range|ranges|"
    r"isbn|doi|lccn|oclc|congress|pmid|arxiv|doc|document|file|report|contract|loan|permit|registration))\b"
)
_PHONE_AFTER = re.compile(r"^\W{0,3}(?:office|fax|mobile|cell|home|work|tel|phone|landline|direct)\b")


def _phone_context(doc: Doc, start: int, end: int) -> int:
    """+1 if the nearest keyword before is a phone word (or one follows), -1 if a non-phone one, else 0."""
    last = None
    for m in _PHONE_KEYWORDS.finditer(doc.before(start, 36)):
        last = m
    if last is not None and last.group("neg") is not None:
        return -1
    if last is not None:
        return 1
    if _PHONE_AFTER.search(doc.after(end)):
        return 1
    return 0


_SP = r"[ \u00a0]"
_PH_SEP = rf"(?:{_SP}?[\-./]{_SP}?|{_SP})"
_PH_PAREN = rf"\({_SP}?[0-9]{{1,5}}{_SP}?\)"
_PH_DIGITS = r"[0-9]{1,15}"
_PHONE_RE = re.compile(
    r"(?=[+(0-9])(?:(?<![\w@#$€£¥+\-/.=&%])(?<![0-9][.,:])|(?<=\\[ntr]))"
    rf"(?P<plus>\+{_SP}?)?"
    rf"(?P<body>(?:{_PH_PAREN}{_PH_SEP}?)?{_PH_DIGITS}"
    rf"(?:(?:{_PH_SEP}|{_PH_SEP}?{_PH_PAREN}{_PH_SEP}?){_PH_DIGITS}){{0,5}})"
    rf"(?P<ext>{_SP}?(?i:x|ext\.?|extension){_SP}?[0-9]{{1,6}})?"
    r"(?![\w@%]|[\-./:,][0-9]|\+[0-9])"
)
_PH_GROUP = re.compile(r"[0-9]+")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_ONLY_DIGITS_DEL = str.maketrans("", "", " \u00a0-./()+")
_STREET_AFTER_RE = re.compile(
    r"[ ]+(?:Rue|Avenue|Av\.|Boulevard|Via|Viale|Calle|Avenida|Rua|Chemin|Piazza|Plaza|"
    r"(?:(?:[A-Z][\w'’\-]{0,24}\.?|[0-9]{1,3}(?:st|nd|rd|th))[ ]+){1,3}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
    r"Place|Pl|Square|Sq|Terrace|Way|Circle|Parkway|Highway|Trail|Crescent|Close|Grove|Gardens|Row|Walk|Alley|"
    r"Loop|Pike|Plaza|Ridge|Mews|Heights|Junction|Causeway)\b)"
)
_PH_URL_BEFORE = re.compile(r"(?:https?://|www\.)\S*\Z")


def _is_date(a: str, b: str, c: str) -> bool:
    """Whether three digit groups read as a calendar date in one of the usual orders."""
    try:
        x, y, z = int(a), int(b), int(c)
    except ValueError:
        return False
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:  # yyyy-mm-dd
        return 1800 <= x <= 2200 and 1 <= y <= 12 and 1 <= z <= 31
    if len(c) in (2, 4) and len(a) <= 2 and len(b) <= 2:  # dd-mm-yyyy, mm-dd-yyyy, dd.mm.yy
        if len(c) == 4 and not 1800 <= z <= 2200:
            return False
        return (1 <= x <= 31 and 1 <= y <= 12) or (1 <= x <= 12 and 1 <= y <= 31)
    return False


def _nanp_ok(d: str) -> bool:
    return len(d) == 10 and d[0] in "23456789" and d[3] in "23456789" and d[1:3] != "11"


def _phone_shape(raw: str, plus: bool, ctx_of: Callable[[], int]) -> float:
    """Score 0 (not a phone) to 1 for one candidate, from its digit groups, separators and context."""
    groups = _PH_GROUP.findall(raw)
    d = "".join(groups)
    nd = len(d)
    if nd > 15 or nd < 6 or len(set(d)) <= 2:
        return 0.0
    paren = "(" in raw
    if paren and raw.count("(") != raw.count(")"):
        return 0.0
    seps = set(raw.translate(_NO_DIGITS))
    # Dates: three groups that read as a date, or a date with a 4-digit year followed by more numbers.
    if len(groups) == 3 and _is_date(*groups):
        return 0.0
    for i in range(len(groups) - 2):
        if (len(groups[i]) == 4 or len(groups[i + 2]) == 4) and _is_date(groups[i], groups[i + 1], groups[i + 2]):
            return 0.0
    if plus:
        if groups[0][0] == "0" or nd < 8:
            return 0.0
        return 0.95
    sizes = [len(g) for g in groups]
    if (
        "." in seps
        and len(groups) > 1
        and (min(sizes) < 2 or len(groups) < 3 or (len(groups) == 4 and max(sizes) <= 3))
    ):
        return 0.0  # decimals, version numbers, IP-like
    ctx = ctx_of()
    if ctx < 0:
        return 0.0
    if d.startswith("00") and nd >= 10 and d[2] != "0":
        return 0.9  # international prefix 00 + country code
    if paren:
        first = raw.lstrip()
        if first.startswith("(") and first[1:].lstrip().startswith("0)"):
            return 0.0
        if nd >= 8 or (nd >= 7 and ctx > 0):
            return 0.9
        return 0.0
    if len(groups) == 1:
        # One unbroken run of digits: only with a phone word nearby, or NANP / 0-trunk shapes.
        if ctx > 0 and 7 <= nd <= 13:
            return 0.85
        if _nanp_ok(d) or (nd == 11 and d[0] == "1" and _nanp_ok(d[1:])):
            return 0.75
        if nd == 11 and d[0] == "0" and d[1] != "0":
            return 0.7
        return 0.0
    if sizes[0] == 1 and not (nd == 11 and d[0] == "1"):
        return 0.0
    if sum(1 for s in sizes if s == 4) >= 3 and nd >= 12:
        return 0.0  # card-shaped digits that failed the card checks
    if sizes == [3, 2, 4] and seps <= {"-", " "}:
        return 0.8 if ctx > 0 else 0.0  # SSN-shaped
    if sizes in ([3, 3, 4], [1, 3, 3, 4]) and len(seps) == 1:
        return 0.95
    # Space or dot grouped thousands ("100 000 000") are amounts, not numbers to dial.
    if seps <= {" ", ".", "\u00a0"} and sizes[0] <= 3 and all(s == 3 for s in sizes[1:]) and ctx <= 0:
        return 0.0
    if max(sizes) > 8 or (len(groups) > 3 and max(sizes) > 5):
        return 0.0
    if ctx > 0:
        return 0.85
    if max(sizes) <= 2 and d[0] != "0":
        return 0.0  # "10 20 30 40 50": a list of small numbers
    if nd >= 9 or (nd == 8 and d[0] == "0"):
        return 0.8
    return 0.0


def _fallback_worthwhile(raw: str, ctx_of: Callable[[], int]) -> bool:
    """Whether some part of a rejected candidate could still be a phone number."""
    digits = raw.translate(_ONLY_DIGITS_DEL)
    if len(set(digits)) <= 2:
        return False
    if "+" in raw:
        return True
    ctx = ctx_of()
    if ctx < 0:
        return False
    if ctx == 0 and "(" not in raw:
        groups = _PH_GROUP.findall(raw)
        if max(len(g) for g in groups) <= 2 and not any(g[0] == "0" for g in groups):
            return False
    return True


def _split_chunks(raw: str) -> list[tuple[int, int]]:
    """Split a candidate at spaces into chunks, keeping "+cc" and "(area)" chunks with their next."""
    chunks: list[tuple[int, int]] = []
    start = 0
    n = len(raw)
    i = 0
    while i <= n:
        if i == n or raw[i] in " \u00a0":
            if i > start:
                chunks.append((start, i))
            start = i + 1
        i += 1
    merged: list[tuple[int, int]] = []
    carry: tuple[int, int] | None = None
    for s, e in chunks:
        if carry is not None:
            s = carry[0]
            carry = None
        piece = raw[s:e]
        stripped = piece.lstrip("+")
        if (piece.startswith("+") and stripped.isdigit() and len(stripped) <= 3) or (
            piece.startswith("(") and piece.endswith(")")
        ):
            carry = (s, e)
            continue
        merged.append((s, e))
    if carry is not None:
        merged.append(carry)
    return merged


def find_phones(doc: Doc) -> Iterator[Hit]:
    text = doc.text
    check_urls = "://" in text or "www." in text
    for m in _PHONE_RE.finditer(text):
        start, end = m.start(), m.end()
        if end - start < 6 or doc.overlaps_taken(start, end):
            continue  # part of a card, SSN, IBAN, IP or email already found
        if check_urls and _PH_URL_BEFORE.search(text, max(0, start - 200), start):
            continue
        body_end = m.end("body")
        raw = text[start:body_end]
        cache: list[int] = []

        def ctx_of(cache: list[int] = cache, start: int = start, end: int = end) -> int:
            if not cache:
                cache.append(_phone_context(doc, start, end))
            return cache[0]

        score = _phone_shape(raw, raw.startswith("+"), ctx_of)
        if score > 0 and raw[0] not in "+(" and _STREET_AFTER_RE.match(text, end):
            continue  # "44019 3314 Harley Brook Lane": a building number and a house number
        if score > 0:
            yield start, end, "PHONE", score
            continue
        # Several numbers next to each other ("555-123-4567 555-987-6543", "2024-01-05 555-123-4567"),
        # or a number followed by a stray count: try runs of space-separated chunks on their own, left
        # to right, longest first, within a fixed budget so that long runs of numbers stay cheap.
        if " " not in raw and "\u00a0" not in raw:
            continue
        if not _fallback_worthwhile(raw, ctx_of):
            continue
        chunks = _split_chunks(raw)
        k = len(chunks)
        if k < 2:
            continue
        nds = [sum(ch.isdigit() for ch in raw[a:b]) for a, b in chunks]
        budget = 8
        i = 0
        while i < k and budget > 0:
            found = False
            for j in range(k, i, -1):
                if (i == 0 and j == k) or not 6 <= sum(nds[i:j]) <= 15:
                    continue
                budget -= 1
                s, e = chunks[i][0], chunks[j - 1][1]
                sub = raw[s:e]
                sc = _phone_shape(sub, sub.startswith("+"), ctx_of)
                if sc > 0:
                    yield start + s, (end if start + e == body_end else start + e), "PHONE", sc
                    i = j
                    found = True
                    break
                if budget <= 0:
                    break
            if not found:
                i += 1
