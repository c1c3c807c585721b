"""The language of a prompt, as an ISO 639-1 code ("en", "de"...) or "und" when it cannot be told.

Why py3langid: a maintained fork of langid.py (naive Bayes over byte n-grams, about 140 languages),
whose only dependency is numpy and whose 4.5 MB model ships inside the wheel; it is
deterministic (langdetect is random unless seeded) and classifies thousands of short texts a second.
A hand-made stop-word detector would know a handful of languages and guess on the rest.
"""

from __future__ import annotations

import threading
from typing import Any

UNDETERMINED = "und"
# Below this probability the text is too short or too mixed to name a language ("hello", "ok", a
# number); calling those "und" keeps the categories stable between windows instead of scattering
# them over whichever language the n-grams happened to favour.
MIN_PROBABILITY = 0.3
MAX_CHARS = 2000  # the opening of a long prompt says its language as well as the whole

_lock = threading.Lock()
_identifier: Any = None


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def detect_language(text: str) -> str:
    text = text[:MAX_CHARS]
    if not any(ch.isalpha() for ch in text):
        return UNDETERMINED
    language, probability = _get_identifier().classify(text)
    return str(language) if probability >= MIN_PROBABILITY else UNDETERMINED
