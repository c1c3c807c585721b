"""Detectors for identifiers with a fixed shape: emails, payment cards, IBANs, US SSN/ITIN, IPs, national ids.

Each detector is a compiled, boundary-anchored regular expression that proposes candidates, followed by
a validator from `checksums` (or `ipaddress`) that decides, and where the shape alone is ambiguous a
keyword just before the candidate ("ssn", "nhs", "aadhaar", "card"). These are the *strong* detectors:
what they find is taken before the phone, address and name detectors run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from lockgate.guards.pii.checksums import (
    IBAN_LENGTHS,
    NIF_LETTERS,
    card_brand_ok,
    iban_ok,
    it_fiscal_ok,
    itin_group_ok,
    luhn_ok,
    nhs_ok,
    only_digits,
    ssn_parts_ok,
    verhoeff_ok,
)
from lockgate.guards.pii.document import Doc, Hit, has_word

_SSN_CONTEXT = re.compile(r"\b(?:ssn|ssns|social[\s-]*security|soc\.?\s*sec|ss\s*#|ss\s*no|tin|taxpayer)\b")
_ITIN_CONTEXT = re.compile(r"\b(?:itin|taxpayer|tax\s*id)\b")
_NHS_CONTEXT = re.compile(r"\bnhs\b")
_AADHAAR_CONTEXT = re.compile(r"\b(?:aadhaar|aadhar|adhaar|uidai|uid)\b")
_VERSION_CONTEXT = re.compile(r"\b(?:ver|v|build|rev|revision|kernel|node|sdk)\W*$")
_VERSION_WORDS = re.compile(
    r"\b(?:versions?|upgrade[ds]?|downgrade[ds]?|releases?|released|firmware|semver|python|numpy|packages?|"
    r"librar(?:y|ies)|dependenc(?:y|ies)|pip|npm|changelog)\b"
)


_EMAIL_RE = re.compile(
    r"(?=[\w%+\-])(?<![\w.%+\-])[\w%+\-][\w.%+\-]{0,63}@"
    r"(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}(?![\w\-]|\.[^\W_])"
)


def find_emails(doc: Doc) -> Iterator[Hit]:
    if "@" not in doc.text:
        return
    text = doc.text
    for m in _EMAIL_RE.finditer(text):
        start = m.start()
        if start > 0 and text[start - 1] == "\\" and text[start] in "ntr":
            start += 1  # an escaped line break ("\\n") before the address
        local = text[start : text.index("@", start)]
        if not local or local.startswith(".") or local.endswith(".") or ".." in local:
            continue
        yield start, m.end(), "EMAIL", 1.0


_CARD_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w+\-.,/])(?<![0-9] )|(?<=\\[ntr]))"
    r"(?:[0-9]{12,19}"
    r"|[0-9]{4}(?P<s1>[ \-])[0-9]{4}(?P=s1)[0-9]{4}(?:(?P=s1)[0-9]{1,4}){0,2}"
    r"|[0-9]{4}(?P<s2>[ \-])[0-9]{6}(?P=s2)[0-9]{4,5})"
    r"(?![\w\-]|[ \-.,/][0-9])"
)


_CARD_CONTEXT = re.compile(
    r"\b(?:cards?|cc|credit|debit|visa|mastercard|master card|amex|american express|discover|jcb|diners|maestro|"
    r"unionpay|pan)\b"
)


def find_cards(doc: Doc) -> Iterator[Hit]:
    for m in _CARD_RE.finditer(doc.text):
        d = only_digits(m.group())
        if not luhn_ok(d) or len(set(d)) == 1:
            continue
        if card_brand_ok(d) and len(d) >= 14:
            yield m.start(), m.end(), "CREDIT_CARD", 1.0
        elif has_word(_CARD_CONTEXT, doc.before(m.start(), 40)):
            # A short number (12-13 digits: Maestro, old Visa) or an issuer range we do not list, said to be a card.
            yield m.start(), m.end(), "CREDIT_CARD", 0.85


_IBAN_RE = re.compile(
    r"(?=[A-Za-z])(?:(?<![A-Za-z0-9])|(?<=\\[ntr]))(?:[A-Z]{2}|[a-z]{2})[0-9]{2}"
    r"(?:(?P<compact>[A-Za-z0-9]{11,30})|(?P<grouped>(?:[ ][A-Za-z0-9]{4}){2,7}(?:[ ][A-Za-z0-9]{1,4})?))"
    r"(?![A-Za-z0-9])"
)


def find_ibans(doc: Doc) -> Iterator[Hit]:
    text = doc.text
    for m in _IBAN_RE.finditer(text):
        raw = m.group()
        need = IBAN_LENGTHS.get(raw[:2].upper())
        if need is None:
            continue
        if m.group("compact") is not None:
            if len(raw) != need:
                continue
            cut = need
        else:
            # Groups of four: a following 4-letter word may have been taken in; cut at the country's length.
            cut = need + (need - 1) // 4
            if cut > len(raw) or (cut < len(raw) and raw[cut] != " "):
                continue
        compact = raw[:cut].replace(" ", "").upper()
        if iban_ok(compact):
            yield m.start(), m.start() + cut, "IBAN", 1.0


_SSN_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w\-./])|(?<=\\[ntr]))(?P<a>[0-9]{3})(?P<s>[\- ]?)(?P<g>[0-9]{2})(?P=s)(?P<n>[0-9]{4})"
    r"(?![\w\-]|[./,][0-9]|[ \-][0-9])"
)


def find_ssns(doc: Doc, want_ssn: bool, want_itin: bool) -> Iterator[Hit]:
    for m in _SSN_RE.finditer(doc.text):
        a, g, n, sep = m.group("a"), m.group("g"), m.group("n"), m.group("s")
        if a[0] == "9":
            if not want_itin or not itin_group_ok(g):
                continue
            if sep == "-" or has_word(_ITIN_CONTEXT, doc.before(m.start(), 48)):
                yield m.start(), m.end(), "US_ITIN", 0.95 if sep == "-" else 0.85
            continue
        if not want_ssn or not ssn_parts_ok(a, g, n):
            continue
        if sep == "-":
            yield m.start(), m.end(), "US_SSN", 0.95
        elif has_word(_SSN_CONTEXT, doc.before(m.start(), 48)):
            yield m.start(), m.end(), "US_SSN", 0.9
        elif sep == " ":
            yield m.start(), m.end(), "US_SSN", 0.8


_IPV4_RE = re.compile(r"(?=[0-9])(?:(?<![\w.\-])|(?<=\\[ntr]))(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w\-]|\.[0-9])")
_IPV6_RE = re.compile(
    r"(?=[0-9A-Fa-f:])(?:(?<![\w:.%])|(?<=\\[ntr]))(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})(?![\w:.]|%\w)"
)


def find_ips(doc: Doc) -> Iterator[Hit]:
    text = doc.text
    if "." in text:
        for m in _IPV4_RE.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            before = doc.before(m.start(), 48)
            if _VERSION_CONTEXT.search(before) or _VERSION_WORDS.search(before):
                continue
            yield m.start(), m.end(), "IP_ADDRESS", 1.0
    if text.count(":") >= 2:
        for m in _IPV6_RE.finditer(text):
            cand = m.group()
            groups = [g for g in cand.split(":") if g]
            if len(groups) < 2 or not any(c.isdigit() for c in cand):
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            yield m.start(), m.end(), "IP_ADDRESS", 1.0


_IDS_RE = re.compile(
    r"(?=[A-Z0-9])(?:(?<![A-Za-z0-9\-])|(?<=\\[ntr]))(?:"
    r"(?P<nino>(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?P<s>[ ]?)[0-9]{2}(?P=s)[0-9]{2}(?P=s)[0-9]{2}(?P=s)[A-D])"
    r"|(?P<nif>(?:(?P<nie>[XYZ])-?(?P<nd>[0-9]{7})|(?P<dni>[0-9]{8}))-?(?P<c>[A-Z]))"
    r"|(?P<cf>[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])"
    r")(?![A-Za-z0-9\-])"
)
_NHS_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w\-.])|(?<=\\[ntr]))[0-9]{3}(?P<s>[ \-]?)[0-9]{3}(?P=s)[0-9]{4}(?![\w\-]|[.,][0-9])"
)
_AADHAAR_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w\-.])|(?<=\\[ntr]))[2-9][0-9]{3}(?P<s>[ \-]?)[0-9]{4}(?P=s)[0-9]{4}"
    r"(?![\w\-]|[.,][0-9])"
)


def find_national_ids(doc: Doc, wanted: frozenset[str]) -> Iterator[Hit]:
    text = doc.text
    if wanted & {"UK_NINO", "ES_NIF", "IT_FISCAL_CODE"}:
        for m in _IDS_RE.finditer(text):
            if m.group("nino"):
                if "UK_NINO" in wanted:
                    yield m.start(), m.end(), "UK_NINO", 0.9
            elif m.group("nif"):
                if m.group("nie"):
                    num = "XYZ".index(m.group("nie")) * 10_000_000 + int(m.group("nd"))
                else:
                    num = int(m.group("dni"))
                if "ES_NIF" in wanted and NIF_LETTERS[num % 23] == m.group("c"):
                    yield m.start(), m.end(), "ES_NIF", 0.95
            elif "IT_FISCAL_CODE" in wanted and it_fiscal_ok(m.group("cf")):
                yield m.start(), m.end(), "IT_FISCAL_CODE", 1.0
    if "UK_NHS" in wanted and "nhs" in doc.lower:
        for m in _NHS_RE.finditer(text):
            d = only_digits(m.group())
            if nhs_ok(d) and has_word(_NHS_CONTEXT, doc.before(m.start(), 48)):
                yield m.start(), m.end(), "UK_NHS", 0.9
    lower = doc.lower
    if "IN_AADHAAR" in wanted and ("aadha" in lower or "adhaar" in lower or "uid" in lower):
        for m in _AADHAAR_RE.finditer(text):
            d = only_digits(m.group())
            if verhoeff_ok(d) and has_word(_AADHAAR_CONTEXT, doc.before(m.start(), 48)):
                yield m.start(), m.end(), "IN_AADHAAR", 0.9
