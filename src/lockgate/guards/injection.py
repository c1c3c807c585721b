"""Prompt-injection / jailbreak detection: a small linear model over hashed n-gram features.

The detector is built for the input guard's hot path: numpy only, no model hub, about a tenth of a
millisecond for an ordinary prompt. It works in three steps.

1. Normalise (`normalize`): NFKC, casefold, Unicode tag characters decoded back to ASCII, zero-width
   and other format characters dropped, Latin diacritics stripped, Cyrillic/Greek look-alikes folded
   to Latin, whitespace collapsed. A second "skeleton" view (`skeleton`) also folds leetspeak
   (`1gn0r3` -> `ignore`, `l`/`1`/`|` -> `i`), drops everything but letters and squeezes repeated
   letters, so `i.g.n.o.r.e`, `ign ore` and `ignoreeee` all read `ignore`.
2. Hash features (`featurize`): character 3-5-grams of the normalised text, character 5-grams of the
   skeleton, word 1-2-grams, and 1-3-grams of cross-lingual "concepts" (a small en/de/fr/es/it stem
   lexicon: ignoriere/ignorez/ignora -> IGNORE, Anweisungen/consignes/istruzioni -> INSTRUCTION, ...),
   each block hashed into one shared table of 2**bits weights, binary and L2-normalised per block.
   All hashing is vectorised 64-bit arithmetic, deterministic across processes and machines (no
   `hash()`, which Python salts per process).
3. Score: logistic regression over those features. Long texts are scored in overlapping windows and
   the highest window wins, so an injection buried in a long document still counts. `score` never
   raises: on an unexpected internal error it fails closed (1.0), and so does the guard when the
   weights cannot be loaded.

Weights ship in `guards/data/injection_model.npz` (written by `scripts/train_injection.py`, whose
metadata sits next to it in `injection_model.json`).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.guards.base import Action, GuardContext, Verdict

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_PATH = DATA_DIR / "injection_model.npz"
METADATA_PATH = DATA_DIR / "injection_model.json"

# Bumped whenever normalisation or hashing changes: weights trained under another version are refused.
FEATURE_VERSION = 2
DEFAULT_THRESHOLD = 0.69  # calibrated: the validation-split threshold written by scripts/train_injection.py

# Texts longer than WINDOW characters are scored in windows of WINDOW with this stride (so windows
# overlap by WINDOW - STRIDE), at most MAX_WINDOWS of them, spread evenly and always including both ends.
WINDOW = 4096
STRIDE = 3072
MAX_WINDOWS = 48

_U64 = np.uint64
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------

# Look-alike letters from other scripts, keyed by their lower-case form (text is casefolded first).
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "б": "b", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "ж": "x", "з": "3", "и": "u",
    "й": "u", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t",
    "у": "y", "ф": "o", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ъ": "b", "ы": "bi", "ь": "b",
    "э": "e", "ю": "io", "я": "r", "є": "e", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "һ": "h", "ӏ": "i", "ү": "y", "ҽ": "e", "ӧ": "o", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i", "κ": "k",
    "λ": "a", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "c", "τ": "t",
    "υ": "u", "φ": "o", "χ": "x", "ψ": "w", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Latin extensions and IPA letters that stand in for plain ones
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ɪ": "i", "ʏ": "y", "ɴ": "n", "ʀ": "r", "ᴀ": "a", "ʙ": "b",
    "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ᴏ": "o",
    "ᴘ": "p", "ꞯ": "q", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ø": "o", "ł": "l",
    "đ": "d", "ħ": "h", "ŧ": "t", "ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d",
    # Punctuation look-alikes
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u00ab": '"', "\u00bb": '"', "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
    "\u2015": "-", "\u2212": "-", "\u2044": "/", "\u2215": "/", "\u00a0": " ", "\u3000": " ",
}

# Leetspeak and symbol stand-ins, applied to the skeleton view only (digits keep their meaning in the
# normalised view, where "order 4471" must stay a number).
_LEET = {
    "0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "€": "e", "£": "l", "¥": "y", "!": "i", "¡": "i", "|": "i", "+": "t", "l": "i",
    "(": "c", "<": "c",
}


def _build_tables() -> tuple[dict[int, Any], dict[int, Any]]:
    norm: dict[int, Any] = {}
    # Unicode tag characters (U+E0020..U+E007E) mirror printable ASCII and are invisible: "ASCII
    # smuggling" hides instructions in them, so decode them instead of dropping them.
    for cp in range(0xE0020, 0xE007F):
        norm[cp] = chr(cp - 0xE0000).lower()
    for cp in (0xE0001, 0xE007F):
        norm[cp] = None
    for cp in range(0x10000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat == "Cf" or (0xFE00 <= cp <= 0xFE0F):  # zero-width, bidi controls, soft hyphen, variation selectors
            norm[cp] = None
        elif cat == "Mn" and (0x300 <= cp <= 0x36F or 0x1AB0 <= cp <= 0x1AFF or 0x1DC0 <= cp <= 0x1DFF
                              or 0x20D0 <= cp <= 0x20FF or 0xFE20 <= cp <= 0xFE2F):
            norm[cp] = None  # combining diacritics (Zalgo text, stripped accents)
        elif cat.startswith("Z") or ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85":
            norm[cp] = " "
        elif cat == "Cc":
            norm[cp] = None
        elif 0x80 <= cp < 0x2000 and cat.startswith("L"):
            base = unicodedata.normalize("NFKD", ch)
            stripped = "".join(c for c in base if not unicodedata.combining(c))
            if stripped != ch and stripped.isascii() and stripped:
                norm[cp] = stripped.lower()
    for cp in range(0xE0100, 0xE01F0):  # variation selectors supplement
        norm[cp] = None
    for k, v in _CONFUSABLES.items():
        norm[ord(k)] = v

    skel: dict[int, Any] = {}
    for cp in range(0x3000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if not cat.startswith("L"):
            skel[cp] = None  # keep letters only (any script)
    for k, v in _LEET.items():
        skel[ord(k)] = v
    return norm, skel


_NORM_TABLE, _SKEL_TABLE = _build_tables()
_RUNS = re.compile(r"(.)\1{2,}")
_WORD = re.compile(r"\w+")

# A small cross-lingual lexicon (en/de/fr/es/it, accent-free stems of normalised words): each word that
# starts with a stem becomes its concept, and the sequence of concepts gives n-gram features shared by
# all five languages, so what the model learns from plentiful English attacks carries over to the others.
_CONCEPT_STEMS: dict[str, str] = {
    "IGNORE": "ignor disregard missacht overlook desconsider descart scarta trascur nicht_beacht",
    "FORGET": "forget forgot vergiss vergess oubli olvid dimentic esquec",
    "PREVIOUS": "previous prior above earlier preceding vorherig bisherig obig vorig precedent preced anterior "
                "previ sopra oben dessus arriba ursprung original initial initiale iniziale inicial anfang",
    "INSTRUCTION": "instruct directive direktive direttiv directiv anweisung vorgabe consign istruz instrucc "
                   "guideline richtlin pauta orientac comando command befehl ordre ordine orden task aufgabe "
                   "tache tarea compito",
    "RULE": "rule regel regle regla regol norm policy polici politik politiq politic restrict einschrank "
            "beschrank restriz limit grenz filter censor censur zensur safeguard guardrail ethic ethik etic "
            "etiq moral schutz protocol protokol",
    "SYSTEM": "system sistem",
    "PROMPT": "prompt invite indicac configur konfigur setup einstellung parametr",
    "REVEAL": "reveal show display print output dump expose leak disclose repeat verrat zeig ausgeb ausgab "
              "revel affich montr divulg mostr muestr rivel ripet repit repet wiederhol quote zitier cita "
              "enthull devoil desvel dévoil recopi kopier copia copie",
    "SECRET": "secret hidden confidential internal geheim versteckt vertraul intern secre cache ocult nascost "
              "riservat confiden privat verborg",
    "ROLE": "pretend roleplay imagin simulat persona charact charakter personnag personaj personagg role "
            "rolle ruolo finge fingi jouons juguem facciam spielen spiel tu_so",
    "NO": "without ohne keine kein sans aucun ningun senza nessun nicht never niemals jamais nunca unrestrict "
          "unfilter uncensor unlimit ungefilt uneingeschr zensurfrei illimit ilimit",
    "DEVELOPER": "developer entwickl develop developp desarroll svilupp admin administr sudo maintenance debug "
                 "wartung manutenz mantenim creator ersteller createur creador creatore",
    "MODE": "mode modus modo modalit",
    "JAILBREAK": "jailbreak jailbroken",
    "OBEY": "obey comply gehorch befolg obeis obeir obedec obbedi gehorsam",
    "OVERRIDE": "bypass override circumvent umgeh uberschreib contourn elud aggir annul cancel supersed disabl "
                "deactiv deaktiv desactiv disattiv abschalt ausschalt sospend suspend unlock entsperr sblocc "
                "desbloq debloq",
    "REFUSE": "refus ablehn verweiger rechaz negar niega rifiut declin",
    "NEW": "new neue neuer neues nouvel nouveau nuev nuov",
    "AI": "assistant assistent asistent chatbot model modell modele modelo gpt llm",
    "ALL": "all every alle alles tous tout toutes todo todas todos tutto tutte tutti",
    "VERBATIM": "verbatim wortwort wortlich textuel palabra literal parola wortgetreu",
    "CREDENTIAL": "password passwort passe contrasen credential schlussel clave chiave token apikey",
    "SEND": "send sende schick envoi envoy envia invia exfiltr upload",
    "NOW": "now jetzt sofort desormais ahora adesso",
}
_CONCEPT_WORDS: dict[str, str] = {
    "you": "YOU", "your": "YOU", "du": "YOU", "dein": "YOU", "deine": "YOU", "deinen": "YOU", "dich": "YOU",
    "dir": "YOU", "tu": "YOU", "te": "YOU", "toi": "YOU", "ton": "YOU", "tes": "YOU", "ta": "YOU", "vous": "YOU",
    "votre": "YOU", "vos": "YOU", "tuo": "YOU", "tua": "YOU", "tuoi": "YOU", "tue": "YOU", "sei": "YOU",
    "eres": "YOU", "tus": "YOU", "ti": "YOU", "ai": "AI", "ia": "AI", "ki": "AI", "dan": "JAILBREAK",
    "no": "NO", "sin": "NO", "not": "NO", "ni": "NO", "all": "ALL", "new": "NEW", "neu": "NEW", "off": "OVERRIDE",
    "ora": "NOW", "act": "ROLE", "play": "ROLE", "bot": "AI", "mot": "VERBATIM", "key": "CREDENTIAL",
    "cle": "CREDENTIAL", "url": "SEND", "http": "SEND", "https": "SEND", "mai": "NO", "nie": "NO",
}
_STEM_TO_CONCEPT: dict[str, str] = {}
for _c, _stems in _CONCEPT_STEMS.items():
    for _stem in _stems.split():
        _STEM_TO_CONCEPT[_stem.replace("_", "")] = _c
_STEM_PREFIX4 = {stem[:4] for stem in _STEM_TO_CONCEPT if len(stem) >= 4}
_STEM_LENGTHS = sorted({len(stem) for stem in _STEM_TO_CONCEPT if len(stem) >= 4}, reverse=True)
_CONCEPT_ID = {c: i + 1 for i, c in enumerate(sorted(set(_CONCEPT_STEMS) | set(_CONCEPT_WORDS.values())))}
# Leetspeak folding for concept matching ("1gn0r3" -> "ignore"); "l" stays itself here.
_LEET_WORD = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})


def concepts(normalized: str) -> list[str]:
    """The cross-lingual concepts of a normalised text, in order (words without one are skipped)."""
    out = []
    for w in _WORD.findall(normalized.translate(_LEET_WORD)):
        c = _CONCEPT_WORDS.get(w)
        if c is None and len(w) >= 4 and w[:4] in _STEM_PREFIX4:
            for k in _STEM_LENGTHS:
                if k <= len(w):
                    c = _STEM_TO_CONCEPT.get(w[:k])
                    if c is not None:
                        break
        if c is not None:
            out.append(c)
    return out


def normalize(text: str) -> str:
    """The canonical form features are computed on: NFKC, casefold, de-obfuscated, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", text).casefold()
    s = s.translate(_NORM_TABLE)
    return " ".join(s.split())


def skeleton(normalized: str) -> str:
    """Letters only, leetspeak folded, runs of three or more equal letters squeezed to one."""
    s = normalized.translate(_SKEL_TABLE)
    return _RUNS.sub(r"\1", s)


# --------------------------------------------------------------------------------------------------
# Feature hashing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureConfig:
    bits: int = 19
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    skel_ngrams: tuple[int, ...] = (5,)
    word_ngrams: tuple[int, ...] = (1, 2)
    concept_ngrams: tuple[int, ...] = (1, 2, 3)
    version: int = FEATURE_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "char_ngrams": list(self.char_ngrams), "skel_ngrams": list(self.skel_ngrams),
                "word_ngrams": list(self.word_ngrams), "concept_ngrams": list(self.concept_ngrams),
                "version": self.version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        kwargs: dict[str, Any] = {k: tuple(int(x) for x in v) if isinstance(v, list) else int(v) for k, v in d.items()}
        return cls(**kwargs)


def _splitmix(seed: int) -> int:
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) | 1  # odd, so multiplication by it is a bijection mod 2**64


_POS_MULT = np.array([_splitmix(1000 + i) for i in range(8)], dtype=_U64)
_FINAL_MULT = _U64(_splitmix(7))
# One additive salt per (block, n), so equal n-grams of different blocks or sizes land apart.
_SALT = {(name, n): _U64(_splitmix(100 * h + n))
         for name, h in (("char", 11), ("skel", 12), ("word", 13), ("concept", 14)) for n in range(1, 9)}
_SHIFT31 = _U64(31)


def _bucket(h: np.ndarray, bits: int) -> np.ndarray:
    h = h ^ (h >> _SHIFT31)
    h = h * _FINAL_MULT
    return (h >> _U64(64 - bits)).astype(np.int64)


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique, but several times faster on these small int arrays)."""
    s = np.sort(a)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _ngram_hashes(codes: np.ndarray, sizes: tuple[int, ...], block: str) -> list[np.ndarray]:
    """Hashes of every n-gram of `codes` for each n in `sizes` (vectorised, wrapping uint64 arithmetic)."""
    out: list[np.ndarray] = []
    length = codes.shape[0]
    acc: np.ndarray | None = None
    for n in range(1, max(sizes) + 1):
        if length < n:
            break
        term = codes[n - 1:] * _POS_MULT[n - 1]
        acc = term if acc is None else acc[: length - n + 1] + term
        if n in sizes:
            out.append(acc + _SALT[(block, n)])
    return out


def _codes(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(_U64)


def featurize(text: str, cfg: FeatureConfig) -> list[np.ndarray]:
    """Unique hashed feature indices per block (char n-grams, skeleton n-grams, word n-grams).

    Each block is binary and L2-normalised by the caller (weight 1/sqrt(len(block))).
    """
    norm = normalize(text)
    blocks: list[np.ndarray] = []
    parts = _ngram_hashes(_codes(" " + norm + " "), cfg.char_ngrams, "char") if norm else []
    blocks.append(_unique(_bucket(np.concatenate(parts), cfg.bits)) if parts else _EMPTY)
    skel = skeleton(norm)
    parts = _ngram_hashes(_codes(skel), cfg.skel_ngrams, "skel") if skel else []
    blocks.append(_unique(_bucket(np.concatenate(parts), cfg.bits)) if parts else _EMPTY)
    words = _WORD.findall(norm)
    if words:
        wh = np.fromiter((zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words), dtype=_U64,
                         count=len(words))
        wparts = _ngram_hashes(wh, cfg.word_ngrams, "word")
        blocks.append(_unique(_bucket(np.concatenate(wparts), cfg.bits)))
    else:
        blocks.append(_EMPTY)
    if cfg.concept_ngrams:
        cs = concepts(norm)
        cparts = _ngram_hashes(np.array([_CONCEPT_ID[c] for c in cs], dtype=_U64), cfg.concept_ngrams,
                               "concept") if cs else []
        blocks.append(_unique(_bucket(np.concatenate(cparts), cfg.bits)) if cparts else _EMPTY)
    return blocks


_EMPTY = np.zeros(0, dtype=np.int64)
_CFG_KEYS = ("bits", "char_ngrams", "skel_ngrams", "word_ngrams", "concept_ngrams", "version")


def windows(text: str) -> list[str]:
    """The pieces of `text` that get scored: the whole text, or overlapping windows of a long one."""
    n = len(text)
    if n <= WINDOW:
        return [text]
    starts = list(range(0, n - WINDOW + 1, STRIDE))
    if starts[-1] != n - WINDOW:
        starts.append(n - WINDOW)
    if len(starts) > MAX_WINDOWS:
        picks = np.linspace(0, len(starts) - 1, MAX_WINDOWS).round().astype(int)
        starts = [starts[i] for i in sorted(set(picks.tolist()))]
    return [text[s: s + WINDOW] for s in starts]


# --------------------------------------------------------------------------------------------------
# The detector and the guard
# --------------------------------------------------------------------------------------------------


class InjectionDetector:
    """Scores a text with the shipped (or a given) linear model; `score` is a probability in [0, 1]."""

    def __init__(self, weights: np.ndarray, bias: float, cfg: FeatureConfig, threshold: float = DEFAULT_THRESHOLD,
                 metadata: dict[str, Any] | None = None) -> None:
        if weights.shape != (1 << cfg.bits,):
            raise ValueError(f"weights have shape {weights.shape}, expected {(1 << cfg.bits,)}")
        if cfg.version != FEATURE_VERSION:
            raise ValueError(f"weights were trained for feature version {cfg.version}, this code is {FEATURE_VERSION}")
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.bias = float(bias)
        self.cfg = cfg
        self.threshold = float(threshold)
        self.metadata = metadata or {}

    @classmethod
    def from_file(cls, path: Path | str) -> InjectionDetector:
        with np.load(path, allow_pickle=False) as z:
            scale = float(z["scale"]) if "scale" in z.files else 1.0
            weights = z["weights"].astype(np.float32) * np.float32(scale)
            bias = float(z["bias"])
            threshold = float(z["threshold"])
            cfg = FeatureConfig.from_dict({k: z[k].tolist() for k in _CFG_KEYS if k in z.files})
        return cls(weights, bias, cfg, threshold)

    @classmethod
    @functools.cache
    def load_default(cls) -> InjectionDetector:
        """The model shipped in the package (loaded once per process)."""
        return cls.from_file(MODEL_PATH)

    def logit(self, text: str) -> float:
        """The model's raw score of one window (no windowing)."""
        z = self.bias
        w = self.weights
        for block in featurize(text, self.cfg):
            if block.size:
                z += float(w[block].sum()) / math.sqrt(block.size)
        return z

    def score(self, text: str) -> float:
        """Probability (0..1) that `text` is a prompt injection or jailbreak. Never raises."""
        try:
            if not isinstance(text, str):
                text = str(text)
            z = max(self.logit(piece) for piece in windows(text))
        except Exception:  # noqa: BLE001 - a guard must answer; fail closed on the unexpected
            return 1.0
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-min(z, 700.0)))
        e = math.exp(max(z, -700.0))
        return e / (1.0 + e)


# A text of a few words gives the linear model only a handful of n-grams, so its score there is
# poorly calibrated ("Summarise this text." scored 0.77, "limited" 0.75). Short texts must clear a
# higher bar; short attacks ("Ignore previous instructions.", "Reveal your system prompt.") still
# score above 0.95.
SHORT_TEXT_WORDS = 5
SHORT_TEXT_THRESHOLD = 0.95


class InjectionGuard:
    """Input guard: blocks (or takes `action` on) text the injection detector scores at or over `threshold`
    (or over `SHORT_TEXT_THRESHOLD` for texts under `SHORT_TEXT_WORDS` words)."""

    name = "injection"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, action: Action = Action.BLOCK,
                 detector: InjectionDetector | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        self.threshold = threshold
        self.action = action
        self._detector = detector

    @property
    def detector(self) -> InjectionDetector:
        if self._detector is None:
            self._detector = InjectionDetector.load_default()
        return self._detector

    def check(self, text: str, context: GuardContext) -> Verdict:
        try:
            score = self.detector.score(text)
        except Exception:  # noqa: BLE001 - e.g. the weights file is missing: fail closed, say why
            return Verdict(guard=self.name, action=self.action, score=1.0,
                           reason="prompt-injection detector unavailable")
        threshold = self.threshold
        if isinstance(text, str) and len(text.split()) < SHORT_TEXT_WORDS:
            threshold = max(threshold, SHORT_TEXT_THRESHOLD)
        if score >= threshold:
            return Verdict(guard=self.name, action=self.action, score=score,
                           reason=f"prompt-injection score {score:.2f} ≥ {threshold:.2f}")
        return Verdict(guard=self.name, action=Action.ALLOW, score=score,
                       reason=f"prompt-injection score {score:.2f} < {threshold:.2f}")
