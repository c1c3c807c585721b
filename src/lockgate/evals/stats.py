"""Pure statistics for the evaluation gate: confidence intervals and paired comparisons.

`lockgate eval SUITE --release R --baseline B` reports each metric with a 95% confidence interval
and compares the candidate release with its baseline on the *same* cases. Everything here is a
pure function of its arguments (no I/O, no global state); randomness only in the bootstrap, and
that is seeded. Only the standard library and numpy are used: the normal quantile comes from
`statistics.NormalDist` and the normal CDF from `math.erf`/`math.erfc`, so scipy is not needed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "BootstrapResult",
    "McNemarResult",
    "Significance",
    "latency_summary",
    "mcnemar",
    "normal_cdf",
    "paired_bootstrap_diff",
    "percentile",
    "regression",
    "significance",
    "two_proportion_z",
    "wilson_interval",
]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _z_for(confidence: float) -> float:
    """Two-sided critical value, e.g. 1.959964 for 95%."""
    _check_confidence(confidence)
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def normal_cdf(x: float) -> float:
    """Standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --------------------------------------------------------------------------------------------
# Confidence interval for a pass rate
# --------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion `successes / n`.

    Why Wilson: eval suites are small (tens to hundreds of cases) and pass rates sit near 0 or 1,
    exactly where the textbook Wald interval `p +- z*sqrt(p(1-p)/n)` collapses to zero width or
    leaves [0, 1]. Wilson stays inside [0, 1], has near-nominal coverage for small n (Brown, Cai &
    DasGupta 2001 recommend it), and is closed-form. With no data (n == 0) nothing is known, so the
    interval is the whole range (0.0, 1.0).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    z = _z_for(confidence)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


# --------------------------------------------------------------------------------------------
# Latency percentiles
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]) with linear interpolation between closest ranks.

    Why this definition: it is numpy's default (`method="linear"`, Hyndman & Fan type 7), so the
    numbers match what anyone re-checking a report with numpy or pandas gets. Implemented directly
    (sort + interpolate) so it has no hidden dependency on numpy's defaults changing.
    Raises ValueError on an empty sequence: a percentile of nothing is undefined, not 0.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of an empty sequence is undefined")
    if any(math.isnan(v) for v in data):
        raise ValueError("values contain NaN")
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    if frac == 0.0 or data[lo] == data[hi]:
        return data[lo]
    return data[lo] + (data[hi] - data[lo]) * frac


def latency_summary(values: Sequence[float]) -> dict[str, float | int]:
    """p50, p95, p99, mean and n of a latency sample (any unit; the caller names it).

    Tail percentiles rather than mean +- sd because latency is right-skewed: the gate cares about
    the slow requests users notice. Raises ValueError on an empty sample (see `percentile`).
    """
    data = [float(v) for v in values]
    if not data:
        raise ValueError("latency summary of an empty sample is undefined")
    return {
        "p50": percentile(data, 50.0),
        "p95": percentile(data, 95.0),
        "p99": percentile(data, 99.0),
        "mean": math.fsum(data) / len(data),
        "n": len(data),
    }


# --------------------------------------------------------------------------------------------
# Paired binary outcomes: McNemar
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """Result of the exact McNemar test on the discordant pairs.

    b: cases the baseline passed and the candidate failed (regressions).
    c: cases the baseline failed and the candidate passed (fixes).
    p_value: exact two-sided binomial p-value (conservative).
    p_value_mid: mid-p variant (less conservative, closer to nominal size).
    direction: "candidate_worse" (b > c), "candidate_better" (c > b) or "no_change" (b == c).
    """

    b: int
    c: int
    p_value: float
    p_value_mid: float
    direction: str

    @property
    def n_discordant(self) -> int:
        return self.b + self.c


def mcnemar(b: int, c: int) -> McNemarResult:
    """Exact McNemar test for paired pass/fail outcomes of baseline and candidate on the same cases.

    Why McNemar: both releases run the same cases, so outcomes are paired; a two-sample test on the
    pass rates would ignore that and lose power. Only discordant pairs carry information; under H0
    (no difference) each is a regression or a fix with probability 1/2, so min(b, c) ~ Bin(b + c, 1/2).
    Why exact: the chi-square approximation is poor when b + c is small, which is the usual case
    for an eval suite. The tail is summed with `math.comb` in integer arithmetic and divided once
    (Python's int / int is correctly rounded), so it is exact for any n without overflow.
    The mid-p variant subtracts half the probability of the observed value; it is offered because
    the exact test is conservative for discrete data. With b == c == 0 both p-values are 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"b and c must be non-negative, got b={b}, c={c}")
    n = b + c
    k = min(b, c)
    total = 1 << n  # 2**n
    # point = P(X == k) * 2**n; tail = P(X <= k) * 2**n, walking down with the exact integer
    # recurrence C(n, i-1) = C(n, i) * i // (n - i + 1): O(k) steps instead of k calls to comb.
    point = math.comb(n, k)
    term = tail = point
    for i in range(k, 0, -1):
        term = term * i // (n - i + 1)
        tail += term
    p_exact = min(1.0, (2 * tail) / total)
    p_mid = min(1.0, (2 * tail - point) / total)
    if b > c:
        direction = "candidate_worse"
    elif c > b:
        direction = "candidate_better"
    else:
        direction = "no_change"
    return McNemarResult(b=b, c=c, p_value=p_exact, p_value_mid=p_mid, direction=direction)


class Significance(enum.Enum):
    """Verdict of a paired comparison at a significance level."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NO_SIGNIFICANT_CHANGE = "no_significant_change"


def significance(result: McNemarResult, alpha: float = 0.05, *, mid_p: bool = False) -> Significance:
    """Classify a McNemar result: significantly worse, significantly better, or neither.

    Uses the exact (conservative) p-value by default so a gate does not block a release on a
    borderline result; pass `mid_p=True` for the less conservative variant.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    p = result.p_value_mid if mid_p else result.p_value
    if p >= alpha or result.direction == "no_change":
        return Significance.NO_SIGNIFICANT_CHANGE
    return Significance.REGRESSION if result.direction == "candidate_worse" else Significance.IMPROVEMENT


def regression(result: McNemarResult, alpha: float = 0.05, *, mid_p: bool = False) -> bool:
    """True when the candidate is significantly worse than the baseline (p < alpha and b > c)."""
    return significance(result, alpha, mid_p=mid_p) is Significance.REGRESSION


# --------------------------------------------------------------------------------------------
# Paired continuous outcomes: bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """Mean paired difference (candidate - baseline) with a percentile bootstrap interval."""

    mean_diff: float
    low: float
    high: float
    confidence: float
    iterations: int
    n: int

    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of 0 (a significant difference)."""
        return self.low > 0.0 or self.high < 0.0


_BOOTSTRAP_CHUNK_CELLS = 1 << 20  # bound memory: at most ~1M resampled indices at a time


def paired_bootstrap_diff(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    iterations: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Paired bootstrap of the mean difference candidate - baseline on the same cases.

    Why paired: resampling cases (not each release separately) keeps the per-case correlation, so
    the interval reflects only the change between releases, not case difficulty. Why bootstrap:
    scores (similarity, judge grades, latency) are bounded or skewed, and the bootstrap needs no
    normality assumption. Why the percentile interval: simple, transformation-respecting and
    adequate at 2000 iterations. Deterministic for a given seed (numpy `default_rng(seed)`),
    so a gate run is reproducible. With all differences equal, the interval is that single value.
    """
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.ndim != 1 or cand.ndim != 1 or base.shape != cand.shape:
        raise ValueError(f"baseline and candidate must be 1-D and the same length, got {base.shape}, {cand.shape}")
    n = int(base.shape[0])
    if n == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    _check_confidence(confidence)
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(cand))):
        raise ValueError("values must be finite")
    diffs = cand - base
    rng = np.random.default_rng(seed)
    means = np.empty(iterations, dtype=np.float64)
    rows = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, iterations, rows):
        stop = min(start + rows, iterations)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diffs[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.percentile(means, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return BootstrapResult(
        mean_diff=float(diffs.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        iterations=iterations,
        n=n,
    )


# --------------------------------------------------------------------------------------------
# Unpaired proportions: two-proportion z-test
# --------------------------------------------------------------------------------------------


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Two-proportion z-test of H0: p1 == p2, returning (z, two-sided p-value).

    z = (x1/n1 - x2/n2) / SE with the *pooled* SE sqrt(p(1-p)(1/n1 + 1/n2)), p = (x1+x2)/(n1+n2),
    because under H0 both samples share one proportion; this matches statsmodels' `proportions_ztest`.
    For unpaired samples only (e.g. different case sets); paired runs should use `mcnemar`.
    When the pooled SE is 0 (both samples all-pass or all-fail) the proportions are equal:
    (0.0, 1.0). The p-value is erfc(|z|/sqrt 2) == 2 * (1 - Phi(|z|)) without cancellation in the tail.
    """
    for x, n in ((x1, n1), (x2, n2)):
        if n <= 0 or x < 0 or x > n:
            raise ValueError(f"need 0 <= x <= n and n > 0, got x={x}, n={n}")
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return (0.0, 1.0)
    z = (p1 - p2) / se
    return (z, math.erfc(abs(z) / math.sqrt(2.0)))
