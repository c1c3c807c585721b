"""Pure validators for structured identifiers: check digits, registries and issuing rules.

Each function takes the already extracted characters of one candidate and answers yes or no, without
looking at the text around it: Luhn (cards), ISO 13616 lengths and mod-97 (IBANs), the SSA
rules for SSNs and ITINs, the Spanish NIF letter, the Italian codice fiscale check character,
Verhoeff (Aadhaar), the NHS mod-11 and card issuer ranges. Keeping them here lets the detectors stay
about *finding* candidates, and lets tests check the arithmetic directly.
"""

from __future__ import annotations

import re

_NOT_DIGIT = re.compile(r"[^0-9]")


def only_digits(s: str) -> str:
    """`s` without its separators (anything not 0-9)."""
    return _NOT_DIGIT.sub("", s)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


# Lengths of IBANs per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """`compact` is upper-case, without spaces, of exactly the country's length."""
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(num) % 97 == 1


def ssn_parts_ok(area: str, group: str, serial: str) -> bool:
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    whole = area + group + serial
    # Numbers the SSA voided after they were printed in advertising; one digit repeated.
    return whole not in ("078051120", "219099999") and len(set(whole)) > 1


def itin_group_ok(group: str) -> bool:
    g = int(group)
    return 50 <= g <= 65 or 70 <= g <= 88 or 90 <= g <= 92 or 94 <= g <= 99


NIF_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"

_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23),
            strict=True,
        )
    ),
}


def _cf_even(ch: str) -> int:
    return ord(ch) - 48 if ch.isdigit() else ord(ch) - 65


def it_fiscal_ok(code: str) -> bool:
    total = 0
    for i, ch in enumerate(code[:15]):
        total += _CF_ODD[ch] if i % 2 == 0 else _cf_even(ch)
    return chr(65 + total % 26) == code[15]


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)


def _verhoeff_p() -> tuple[tuple[int, ...], ...]:
    rows = [tuple(range(10)), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)]
    while len(rows) < 8:
        rows.append(tuple(rows[1][x] for x in rows[-1]))
    return tuple(rows)


_VERHOEFF_P = _verhoeff_p()


def verhoeff_ok(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def nhs_ok(digits: str) -> bool:
    total = sum((10 - i) * (ord(ch) - 48) for i, ch in enumerate(digits[:9]))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == ord(digits[9]) - 48


def card_brand_ok(d: str) -> bool:
    """Whether the number's length fits the card issuer range its first digits fall in."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    two = int(d[:2])
    four = int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d[0] == "3":  # Diners 30/36/38/39, JCB 35
        return 14 <= n <= 19
    if four in (1800, 2131):
        return n == 15
    if d[0] == "6" or two == 50 or 56 <= two <= 59:
        return 12 <= n <= 19
    return False
