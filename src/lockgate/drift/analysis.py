"""Compare a current window of requests with a reference window, feature by feature.

Features: prompt and output length (characters and tokens), language, topic, every guard's score,
the guards' combined action, refusal rate and confidence, each where the windows record it (see
features.py). Language comes from py3langid; topic is the cosine distance of each prompt's
all-MiniLM-L6-v2 embedding to the centroid of the reference prompts, so prompts about something the
reference never talked about lie far from it. A reference prompt is measured against the centroid
of the *other* reference prompts (leave-one-out): measured against a centroid it helped make, it
would look closer than a new prompt from the very same distribution, and small windows would drift.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lockgate.drift import stats
from lockgate.drift.features import FIXED_FEATURES, Feature, Observation, guard_features, values
from lockgate.drift.stats import DriftSettings, FeatureTest, Verdict

Embedder = Callable[[Sequence[str]], np.ndarray]
MAX_EMBEDDED = 1000  # prompts embedded per window; a uniform sample beyond that (the embedding is the cost)
SAMPLE_SEED = 20240601


class PromptMemo:
    """Languages and embeddings of prompts already seen, kept for the drift monitor: its current window
    slides by `interval_s` while spanning `window_s`, so most prompts of a check were in the last one.
    Bounded: the least recently used prompts are forgotten first."""

    def __init__(self, capacity: int = 4 * MAX_EMBEDDED) -> None:
        self.capacity = capacity
        self._languages: OrderedDict[str, str] = OrderedDict()
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()

    def languages(self, prompts: Sequence[str]) -> list[str]:
        from lockgate.drift.language import detect_language

        return self._lookup(self._languages, prompts, lambda missing: [detect_language(p) for p in missing])

    def embeddings(self, prompts: Sequence[str], embed: Embedder) -> np.ndarray:
        rows = self._lookup(self._embeddings, prompts, lambda missing: list(embed(missing)))
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def _lookup(self, memo: OrderedDict[str, Any], prompts: Sequence[str],
                compute: Callable[[list[str]], list[Any]]) -> list[Any]:
        missing = list(dict.fromkeys(p for p in prompts if p not in memo))
        fresh = dict(zip(missing, compute(missing), strict=True)) if missing else {}
        out = []
        for p in prompts:
            value = fresh[p] if p in fresh else memo[p]
            memo[p] = value
            memo.move_to_end(p)
            out.append(value)
        while len(memo) > self.capacity:
            memo.popitem(last=False)
        return out


class WindowSample:
    """One window's observations, with the costly per-prompt work (language, embedding) done once:
    a reference window is compared again and again by the drift monitor, and a `memo` carries that work
    from one current window to the next."""

    def __init__(self, description: str, observations: Sequence[Observation], *,
                 max_embedded: int = MAX_EMBEDDED, memo: PromptMemo | None = None) -> None:
        self.description = description
        self.observations = list(observations)
        self.max_embedded = max_embedded
        self.memo = memo
        self._languages: list[str] | None = None
        self._embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.observations)

    def prompts(self) -> list[str]:
        return [o.prompt for o in self.observations if o.prompt is not None]

    def languages(self) -> list[str]:
        if self._languages is None:
            if self.memo is not None:
                self._languages = self.memo.languages(self.prompts())
            else:
                from lockgate.drift.language import detect_language

                self._languages = [detect_language(p) for p in self.prompts()]
        return self._languages

    def embeddings(self, embed: Embedder) -> np.ndarray:
        if self._embeddings is None:
            prompts = self.prompts()
            if len(prompts) > self.max_embedded:
                keep = np.random.default_rng(SAMPLE_SEED).choice(len(prompts), self.max_embedded, replace=False)
                prompts = [prompts[i] for i in sorted(keep)]
            if not prompts:
                self._embeddings = np.zeros((0, 0), dtype=np.float32)
            elif self.memo is not None:
                self._embeddings = self.memo.embeddings(prompts, embed)
            else:
                self._embeddings = embed(prompts)
        return self._embeddings


@dataclass(frozen=True)
class FeatureResult:
    name: str
    kind: Literal["numeric", "categorical"]
    description: str
    verdict: Verdict
    test: FeatureTest | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "description": self.description,
                               "verdict": self.verdict.value, "note": self.note}
        if self.test is not None:
            out.update({k: v for k, v in self.test.as_dict().items() if k not in ("kind", "verdict")})
        return out


@dataclass
class DriftReport:
    route: str
    reference: str
    current: str
    n_reference: int
    n_current: int
    settings: DriftSettings
    features: list[FeatureResult]
    notes: list[str] = field(default_factory=list)
    generated_at: float = field(default_factory=time.time)

    @property
    def drifted(self) -> list[FeatureResult]:
        return [f for f in self.features if f.verdict is Verdict.DRIFT]

    @property
    def verdict(self) -> Verdict:
        if self.drifted:
            return Verdict.DRIFT
        if any(f.verdict is Verdict.NO_DRIFT for f in self.features):
            return Verdict.NO_DRIFT
        return Verdict.INSUFFICIENT

    def as_dict(self) -> dict[str, Any]:
        s = self.settings
        return {"route": self.route, "generated_at": self.generated_at, "verdict": self.verdict.value,
                "reference": {"window": self.reference, "n": self.n_reference},
                "current": {"window": self.current, "n": self.n_current},
                "settings": {"alpha": s.alpha, "effect": s.effect, "min_samples": s.min_samples,
                             "large_sample": s.large_sample, "numeric_threshold": s.numeric_threshold,
                             "categorical_threshold": s.categorical_threshold, "psi_threshold": s.psi_threshold},
                "features": [f.as_dict() for f in self.features], "notes": self.notes}


_LANGUAGE = Feature("language", "categorical", "language of the user's messages (py3langid)", lambda o: None)
_TOPIC = Feature("topic", "numeric", "cosine distance of the prompt's MiniLM embedding to the reference centroid",
                 lambda o: None)


def topic_distances(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance to the reference centroid: leave-one-out for reference rows (see the docstring)."""
    if len(reference) < 2 or len(current) == 0:
        return np.zeros(0), np.zeros(0)
    total = reference.sum(axis=0)
    centroid = total / len(reference)
    current_d = 1.0 - current @ centroid / (np.linalg.norm(current, axis=1) * np.linalg.norm(centroid) + 1e-12)
    others = (total[None, :] - reference) / (len(reference) - 1)
    ref_d = 1.0 - np.sum(reference * others, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(others, axis=1) + 1e-12)
    return ref_d.astype(np.float64), current_d.astype(np.float64)


def compare(route: str, reference: WindowSample, current: WindowSample, settings: DriftSettings | None = None,
            *, embed: Embedder | None = None, topic: bool = True, language: bool = True) -> DriftReport:
    """The drift report of `current` against `reference`. `embed` defaults to all-MiniLM-L6-v2."""
    settings = settings or DriftSettings()
    columns: list[tuple[Feature, list[Any], list[Any]]] = []
    for feature in [*FIXED_FEATURES, *guard_features([reference.observations, current.observations])]:
        columns.append((feature, values(feature, reference.observations), values(feature, current.observations)))
    has_prompts = bool(reference.prompts()) and bool(current.prompts())
    if language:
        columns.append((_LANGUAGE, reference.languages(), current.languages()))
    if topic:
        if has_prompts:
            if embed is None:
                from lockgate.embeddings.minilm import embed as minilm_embed

                embed = minilm_embed
            ref_d, cur_d = topic_distances(reference.embeddings(embed), current.embeddings(embed))
            columns.append((_TOPIC, list(ref_d), list(cur_d)))
        else:
            columns.append((_TOPIC, reference.prompts(), current.prompts()))  # reported unavailable below

    present = [(f, r, c) for f, r, c in columns if r or c]
    judged = sum(1 for _, r, c in present if min(len(r), len(c)) >= settings.min_samples)
    alpha = stats.family_alpha(settings, judged)
    results: list[FeatureResult] = []
    for feature, ref_values, cur_values in present:
        if not ref_values or not cur_values:
            missing = "reference" if not ref_values else "current"
            results.append(FeatureResult(feature.name, feature.kind, feature.description, Verdict.UNAVAILABLE,
                                         note=f"not recorded in the {missing} window"))
            continue
        if feature.kind == "numeric":
            test = stats.compare_numeric(ref_values, cur_values, settings, alpha)
        else:
            test = stats.compare_categorical([str(v) for v in ref_values], [str(v) for v in cur_values],
                                             settings, alpha)
        note = "" if test.verdict is not Verdict.INSUFFICIENT else (
            f"needs at least {settings.min_samples} values in each window")
        results.append(FeatureResult(feature.name, feature.kind, feature.description, test.verdict, test, note))

    notes = []
    if not has_prompts:
        notes.append("prompts are missing from "
                     + ("both windows" if not reference.prompts() and not current.prompts() else
                        "the reference window" if not reference.prompts() else "the current window")
                     + ": prompt length, language and topic need traces of a route with `trace_content: full` "
                       "(or a suite as the reference)")
    if judged:
        notes.append(f"alpha {settings.alpha:g} is shared by the {judged} features judged (Bonferroni): "
                     f"{alpha:.3g} each")
    return DriftReport(route, reference.description, current.description, len(reference), len(current),
                       settings, results, notes)
