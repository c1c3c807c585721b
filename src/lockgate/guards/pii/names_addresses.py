"""PERSON and STREET_ADDRESS, found only where a cue makes them near certain.

Free text is full of capitalised words and numbers, so without a model these detectors stay narrow on
purpose: a street address needs a house number next to a street-type word ("12 Main Street",
"Rue de la Paix 5" forms, "-straße 3"), and a name needs a title or a phrase before it ("Dr.", "my name
is", "Regards,"). Most names and addresses in free text are therefore *not* found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lockgate.guards.pii.document import Doc, Hit, any_in

# Street addresses -----------------------------------------------------------------------------------

_STREET_SUFFIX = (
    r"Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|"
    r"Terrace|Ter|Way|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Crescent|Cres|Close|Grove|Gardens|"
    r"Row|Walk|Alley|Aly|Loop|Pike|Plaza|Ridge|Mews|Heights|Hts|Junction|Jct|Causeway|"
    r"Expressway|Expy|Freeway|Fwy|Turnpike|Tpke|Stravenue|Wharf|Quay|Embankment"
)
_UNIT = (
    r"(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Rm|Room|Bldg|Building|Dept|No)\.?[ ]?#?[0-9A-Za-z\-]{1,6}"
    r"|#[0-9A-Za-z\-]{1,6}"
)
_CAP_WORD = r"(?:[A-Z][A-Za-z'’\-]{0,24}\.?|[0-9]{1,3}(?:st|nd|rd|th))"
_ADDR_US_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w\-.,/#$])|(?<=\\[ntr]))[0-9]{1,6}(?:-[0-9]{1,4})?[A-Za-z]?[ ]+"
    rf"(?!The\b)(?:{_CAP_WORD}[ ]+){{1,3}}(?:{_STREET_SUFFIX})\b\.?"
    rf"(?:,?[ ]+(?:{_UNIT}))?"
    r"(?:,?[ ]+(?:[A-Z][a-z]+(?:[ ][A-Z][a-z]+){0,2}),?[ ]+[A-Z]{2}[ ]+[0-9]{5}(?:-[0-9]{4})?\b)?"
)
_ADDR_PREFIX_RE = re.compile(
    r"(?=[0-9])(?:(?<![\w\-.,/#$])|(?<=\\[ntr]))[0-9]{1,5}[a-z]?,?[ ]+"
    r"(?:Rue|Avenue|Boulevard|Bd|Chemin|Allée|Impasse|Quai|Via|Viale|Piazza|Corso|Calle|Avenida|Av\.|Paseo|"
    r"Carrer|Rua|Travessa|Ulica|ul\.)[ ]+"
    r"(?:(?:de|du|des|de la|la|le|les|del|della|delle|di|da|do|dos|das|dei)[ ]+)?"
    r"[A-Z][\w'’\-]{1,24}(?:[ ][A-Z][\w'’\-]{1,24}){0,2}"
)
_ADDR_EU_RE = re.compile(
    r"(?:[Ss]tra(?:ß|ss)e|[Ss]tr\.|straat|[Gg]asse|[Ww]eg|laan|plein|[Aa]llee|[Pp]latz|gade|vej|vägen|gatan|katu|"
    r"kuja|utca|ulica)[ ]+[0-9]{1,5}[a-zA-Z]?(?:[ ]?[\-/][ ]?[0-9]{1,4})?(?![\w\-])"
)
_WORD_BEFORE_RE = re.compile(r"([^\W\d_][\w'’\-]{0,30}) $")


def _eu_street_start(text: str, suffix_start: int) -> int:
    """Where the street name that ends in a suffix like "-straße" begins, or -1 if it isn't a name."""
    i = suffix_start
    while i > 0 and i > suffix_start - 31 and (text[i - 1].isalpha() or text[i - 1] in "'’-"):
        i -= 1
    if i < suffix_start and i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return -1
    start = i
    if start == suffix_start:
        # A separate word: "Linzer Strasse 69", "Rue" forms are handled elsewhere.
        m = _WORD_BEFORE_RE.search(text, max(0, start - 33), start)
        if m is None or not m.group(1)[0].isupper():
            return -1
        start = m.start(1)
    if not text[start].isupper():
        return -1
    # One more capitalised word before it ("Karl Marx Allee 3").
    m = _WORD_BEFORE_RE.search(text, max(0, start - 33), start)
    if m is not None and m.group(1)[0].isupper() and m.group(1) not in _NAME_STOP:
        start = m.start(1)
    return start


_NUMBER_THEN_WORD_RE = re.compile(r"[0-9][A-Za-z]?,?[ ]+[A-Z]")
_EU_HINTS = ("stra", "str.", "gasse", "weg", "laan", "plein", "allee", "platz", "gade", "vej", "väg", "gatan",
             "katu", "kuja", "utca", "ulica")  # fmt: skip


def find_addresses(doc: Doc) -> Iterator[Hit]:
    text = doc.text
    if _NUMBER_THEN_WORD_RE.search(text):
        for m in _ADDR_US_RE.finditer(text):
            yield m.start(), m.end(), "STREET_ADDRESS", 0.85
        for m in _ADDR_PREFIX_RE.finditer(text):
            yield m.start(), m.end(), "STREET_ADDRESS", 0.8
    lower = doc.lower
    if not any_in(lower, _EU_HINTS):
        return
    for m in _ADDR_EU_RE.finditer(text):
        start = _eu_street_start(text, m.start())
        if start >= 0:
            yield start, m.end(), "STREET_ADDRESS", 0.8


# Person names (cue-based only) ------------------------------------------------------------------------

_TITLE_CUE_RE = re.compile(
    r"(?=[MDPSHF])\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Mme|Mlle|Herr|Frau|Señor|Señora|Sr|Sra)\b\.?[ \t]*"
)
_PHRASE_CUE_RE = re.compile(
    r"\b(?:my name is|my name's|my names is|i am called|i'm called|name is|named|called me|signed by|"
    r"full name|first name|last name|surname|patient name|customer name|dear)\b:?[ \t]*"
    r"|(?:\bname:|\bsincerely,|\bregards,|\bcheers,|\bthanks,)(?:[ \t\n]|\\[ntr]){0,6}",
    re.IGNORECASE,
)
_TITLE_HINTS = ("Mr", "Ms", "Mi", "Mx", "Dr", "Pro", "Sir", "Dam", "Mme", "Mlle", "Herr", "Frau", "Se", "Sr")
_PHRASE_HINTS = ("name", "dear", "called", "signed", "sincerely", "regards", "cheers", "thanks")


def _person_cues(doc: Doc) -> Iterator[int]:
    """Positions right after a cue that a name follows."""
    text = doc.text
    if any_in(text, _TITLE_HINTS):
        for m in _TITLE_CUE_RE.finditer(text):
            yield m.end()
    lower = doc.lower
    if any_in(lower, _PHRASE_HINTS):
        for m in _PHRASE_CUE_RE.finditer(doc.text):
            yield m.end()


_NAME_TOKEN_RE = re.compile(r"([^\W\d_][^\W\d_'’\-]{0,30}(?:['’\-][^\W\d_]{1,30}){0,2})(\.?)")
_NAME_STOP = frozenset(
    "The A An And Or Not No Yes Just Also Very My Your His Her Our Their This That These Those It I We You They "
    "He She Sir Madam Madame Customer Customers Team All Everyone User Bot Support Friend Friends Colleague "
    "Colleagues Mr Mrs Ms Dr Hi Hello Please Thanks Thank Regards Best Sincerely Is Was Are Were Be On In At For "
    "To Of From With By As Unknown Redacted None Null Here There What Who Which When Where Why How".split()
)


def find_persons(doc: Doc) -> Iterator[Hit]:
    text = doc.text
    for pos in _person_cues(doc):
        start = pos
        end = pos
        words = 0
        while words < 4:
            t = _NAME_TOKEN_RE.match(text, pos)
            if t is None:
                break
            word = t.group(1)
            if not word[0].isupper() or word in _NAME_STOP:
                break
            # "D." is an initial; a full word with a trailing dot ends the sentence.
            if t.group(2) and len(word) == 1:
                end = t.end()
            else:
                end = t.end(1)
            words += 1
            pos = t.end()
            if t.group(2) and len(word) > 1:
                break
            if pos < len(text) and text[pos] == " ":
                pos += 1
            else:
                break
        if words == 0:
            continue
        if words == 1 and len(text[start:end]) < 2:
            continue
        yield start, end, "PERSON", 0.8
