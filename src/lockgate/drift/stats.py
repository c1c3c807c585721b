"""Two-sample drift statistics, and the one rule that turns them into a verdict.

Every feature is judged on two numbers:

- a *test* of "both windows come from the same distribution": the two-sample Kolmogorov-Smirnov test
  for numbers; the chi-square test of homogeneity for categories (Fisher's exact test on a 2x2 table
  whose expected counts are too small for chi-square);
- an *effect size* with a fixed threshold: the Wasserstein-1 distance divided by the reference's
  standard deviation for numbers ("normed Wasserstein", 0.1), the Jensen-Shannon distance (base 2,
  in [0, 1]) for categories (0.1); or the population stability index for both (0.2) when asked.

A feature drifts when the effect reaches its threshold *and* the test rejects at alpha. On small
samples the test is what binds: the effect size of two small same-distribution samples is noisy and
often above its threshold, and the test keeps those from alarming. On large samples the threshold is
what binds: a test rejects for differences too small to matter once there are thousands of values,
while the effect size of same-distribution samples shrinks towards zero. So the verdict does not flip
with sample size alone: a difference below the threshold is never drift, however much data there is,
and a difference above it is drift as soon as there is enough data to be sure of it.

Alpha is family-wise: `family_alpha` splits it over the features of one report (Bonferroni), so a
report of ten features raises no more false alarms than a report of one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

NUMERIC_THRESHOLD = 0.1  # normed Wasserstein: a tenth of the reference's standard deviation
CATEGORICAL_THRESHOLD = 0.1  # Jensen-Shannon distance
PSI_THRESHOLD = 0.2  # the usual line between "moderate" and "significant" population shift
PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite
CHI_SQUARE_MIN_COUNT = 5  # categories seen fewer times (both windows together) are lumped as "(other)"
OTHER = "(other)"


class Verdict(StrEnum):
    DRIFT = "drift"
    NO_DRIFT = "no drift"
    INSUFFICIENT = "insufficient data"  # fewer than min_samples values in a window
    UNAVAILABLE = "unavailable"  # the feature is not recorded in one of the windows


@dataclass(frozen=True)
class DriftSettings:
    alpha: float = 0.05
    numeric_threshold: float = NUMERIC_THRESHOLD
    categorical_threshold: float = CATEGORICAL_THRESHOLD
    psi_threshold: float = PSI_THRESHOLD
    effect: Literal["distance", "psi"] = "distance"
    min_samples: int = 30
    large_sample: int = 1000  # from here on the threshold is what decides (see the module's docstring)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be at least 2, got {self.min_samples}")
        for name in ("numeric_threshold", "categorical_threshold", "psi_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class FeatureTest:
    """One feature's comparison: what was computed and what it means."""

    kind: Literal["numeric", "categorical"]
    n_reference: int
    n_current: int
    test: str  # "ks", "chi-square", "fisher" or "none"
    statistic: float  # KS D, chi-square, or Fisher's odds ratio
    p_value: float
    score_name: str  # "wasserstein" (normed), "jensen-shannon" or "psi"
    score: float
    threshold: float
    psi: float
    alpha: float
    regime: Literal["small", "large"]
    verdict: Verdict
    plot: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_reference": self.n_reference, "n_current": self.n_current,
                "test": self.test, "statistic": _finite(self.statistic), "p_value": _finite(self.p_value),
                "score_name": self.score_name, "score": _finite(self.score), "threshold": self.threshold,
                "psi": _finite(self.psi), "alpha": self.alpha, "regime": self.regime,
                "verdict": self.verdict.value, "plot": self.plot}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# -- numeric ------------------------------------------------------------------------------------


def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance in units of the reference's standard deviation (the pooled one when the
    reference is constant): 0.1 means the distributions differ by a tenth of the usual spread."""
    distance = float(sps.wasserstein_distance(reference, current))
    scale = float(np.std(reference))
    if scale == 0.0:
        scale = float(np.std(np.concatenate([reference, current])))
    if scale == 0.0:
        return 0.0  # both windows hold one and the same value
    return distance / scale


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index over the reference's quantile bins (fewer where values repeat)."""
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    cur_counts = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1)
    return _psi(ref_counts, cur_counts)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r = np.maximum(ref_counts / max(ref_counts.sum(), 1), PSI_FLOOR)
    c = np.maximum(cur_counts / max(cur_counts.sum(), 1), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def compare_numeric(reference: Sequence[float], current: Sequence[float], settings: DriftSettings,
                    alpha: float | None = None) -> FeatureTest:
    ref = _clean(reference)
    cur = _clean(current)
    alpha = settings.alpha if alpha is None else alpha
    regime = _regime(len(ref), len(cur), settings)
    if min(len(ref), len(cur)) < settings.min_samples:
        return _insufficient("numeric", len(ref), len(cur), "ks", settings, alpha, regime)
    ks = sps.ks_2samp(ref, cur)
    psi = psi_numeric(ref, cur)
    if settings.effect == "psi":
        score_name, score, threshold = "psi", psi, settings.psi_threshold
    else:
        score_name, score, threshold = "wasserstein", normed_wasserstein(ref, cur), settings.numeric_threshold
    p_value = float(ks.pvalue)
    return FeatureTest("numeric", len(ref), len(cur), "ks", float(ks.statistic), p_value, score_name, score,
                       threshold, psi, alpha, regime, _judge(p_value, score, threshold, alpha),
                       numeric_plot(ref, cur))


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def numeric_plot(ref: np.ndarray, cur: np.ndarray, bins: int = 24) -> dict[str, Any]:
    """Shares of each window per bin, on bins spanning the pooled 1st to 99th percentile."""
    pooled = np.concatenate([ref, cur])
    low, high = (float(v) for v in np.quantile(pooled, [0.01, 0.99]))
    if high <= low:
        low, high = float(pooled.min()), float(pooled.max())
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)

    def shares(x: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(x, low, high), bins=edges)
        return [round(float(v), 5) for v in counts / max(len(x), 1)]

    return {"edges": [round(float(e), 5) for e in edges], "reference": shares(ref), "current": shares(cur)}


# -- categorical --------------------------------------------------------------------------------


def lump_rare(reference: Counter[str], current: Counter[str],
              min_count: int = CHI_SQUARE_MIN_COUNT) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories and their counts per window, rare ones (fewer than `min_count` in both windows
    together) lumped into one "(other)" category so the chi-square approximation holds."""
    pooled = reference + current
    common = sorted((c for c in pooled if pooled[c] >= min_count), key=lambda c: (-pooled[c], c))
    rare = [c for c in pooled if pooled[c] < min_count]
    labels = list(common)
    ref_counts = [reference[c] for c in common]
    cur_counts = [current[c] for c in common]
    if rare:
        labels.append(OTHER)
        ref_counts.append(sum(reference[c] for c in rare))
        cur_counts.append(sum(current[c] for c in rare))
    return labels, np.array(ref_counts, dtype=np.int64), np.array(cur_counts, dtype=np.int64)


def homogeneity_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[str, float, float]:
    """(test name, statistic, p-value) for "both windows share one categorical distribution"."""
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return "chi-square", 0.0, 1.0  # one category in both windows: nothing can differ
    if table.shape[1] == 2:
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        if expected.min() < CHI_SQUARE_MIN_COUNT:
            odds, p_value = sps.fisher_exact(table)
            return "fisher", float(odds), float(p_value)
    chi2, p_value, _, _ = sps.chi2_contingency(table, correction=False)
    return "chi-square", float(chi2), float(p_value)


def js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2): 0 for identical shares, 1 for disjoint ones."""
    value = float(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2))
    return 0.0 if math.isnan(value) else value


def compare_categorical(reference: Sequence[str], current: Sequence[str], settings: DriftSettings,
                        alpha: float | None = None) -> FeatureTest:
    alpha = settings.alpha if alpha is None else alpha
    regime = _regime(len(reference), len(current), settings)
    if min(len(reference), len(current)) < settings.min_samples:
        return _insufficient("categorical", len(reference), len(current), "chi-square", settings, alpha, regime)
    labels, ref_counts, cur_counts = lump_rare(Counter(reference), Counter(current))
    test, statistic, p_value = homogeneity_test(ref_counts, cur_counts)
    psi = _psi(ref_counts, cur_counts)
    if settings.effect == "psi":
        score_name, score, threshold = "psi", psi, settings.psi_threshold
    else:
        score_name, score, threshold = "jensen-shannon", js_distance(ref_counts, cur_counts), \
            settings.categorical_threshold
    plot = {"categories": labels,
            "reference": [round(float(v), 5) for v in ref_counts / ref_counts.sum()],
            "current": [round(float(v), 5) for v in cur_counts / cur_counts.sum()]}
    return FeatureTest("categorical", len(reference), len(current), test, statistic, p_value, score_name, score,
                       threshold, psi, alpha, regime, _judge(p_value, score, threshold, alpha), plot)


# -- the verdict ----------------------------------------------------------------------------------


def _judge(p_value: float, score: float, threshold: float, alpha: float) -> Verdict:
    return Verdict.DRIFT if score >= threshold and p_value < alpha else Verdict.NO_DRIFT


def _regime(n_ref: int, n_cur: int, settings: DriftSettings) -> Literal["small", "large"]:
    return "large" if min(n_ref, n_cur) >= settings.large_sample else "small"


def _insufficient(kind: Literal["numeric", "categorical"], n_ref: int, n_cur: int, test: str,
                  settings: DriftSettings, alpha: float, regime: Literal["small", "large"]) -> FeatureTest:
    score_name = "psi" if settings.effect == "psi" else ("wasserstein" if kind == "numeric" else "jensen-shannon")
    threshold = settings.psi_threshold if settings.effect == "psi" else (
        settings.numeric_threshold if kind == "numeric" else settings.categorical_threshold)
    nan = float("nan")
    return FeatureTest(kind, n_ref, n_cur, test, nan, nan, score_name, nan, threshold, nan, alpha, regime,
                       Verdict.INSUFFICIENT)


def family_alpha(settings: DriftSettings, features_judged: int) -> float:
    """Each feature's share of the report's alpha (Bonferroni)."""
    return settings.alpha / max(features_judged, 1)
