"""Statistics of the evaluation gate against known values.

Reference values were computed once with scipy 1.x (not a runtime or test dependency) and written
in: Wilson intervals with `scipy.stats.binomtest(k, n).proportion_ci(cl, method="wilson")`,
exact McNemar with `scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue`, mid-p with
`2 * (binom.cdf(k, n, .5) - .5 * binom.pmf(k, n, .5))`, the z-test's p with `2 * norm.sf(|z|)`,
percentiles with `numpy.percentile` (default linear method).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lockgate.evals.stats import (
    BootstrapResult,
    McNemarResult,
    Significance,
    latency_summary,
    mcnemar,
    normal_cdf,
    paired_bootstrap_diff,
    percentile,
    regression,
    significance,
    two_proportion_z,
    wilson_interval,
)

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

# --- Wilson ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "low", "high"),
    [
        (8, 10, 0.95, 0.4901624715366418, 0.9433178485456248),  # textbook: (0.4902, 0.9433)
        (0, 10, 0.95, 0.0, 0.27753279986288926),
        (10, 10, 0.95, 0.7224672001371109, 1.0),
        (95, 100, 0.95, 0.8882495307680809, 0.978456320845632),
        (1, 1, 0.95, 0.20654931437723745, 1.0),
        (8, 10, 0.99, 0.4008186965216716, 0.9598688474953836),
    ],
)
def test_wilson_matches_scipy(successes: int, n: int, confidence: float, low: float, high: float) -> None:
    got = wilson_interval(successes, n, confidence)
    assert got == pytest.approx((low, high), abs=1e-12)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(8, 10)
    assert round(lo, 4) == 0.4902 and round(hi, 4) == 0.9433
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)
    with pytest.raises(ValueError):
        wilson_interval(5, 10, confidence=1.0)


# --- percentiles ----------------------------------------------------------------------------


def test_percentile_matches_numpy_linear() -> None:
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10.5, 40]
    # numpy.percentile(values, q) for q = 0, 50, 95, 99, 100, 33.3
    expected = {0.0: 1.0, 50.0: 6.0, 95.0: 25.25, 99.0: 37.05, 100.0: 40.0, 33.3: 4.33}
    for q, want in expected.items():
        assert percentile(values, q) == pytest.approx(want, abs=1e-9)
    # order of input does not matter
    assert percentile(list(reversed(values)), 95.0) == pytest.approx(25.25)


def test_percentile_agrees_with_numpy_on_random_data() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(size=257).tolist()
    for q in (0.0, 1.0, 12.5, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0):
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)), rel=1e-12)


def test_percentile_edges() -> None:
    assert percentile([3.0], 99.0) == 3.0
    assert percentile([2.0, 2.0, 2.0], 37.0) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50.0)
    with pytest.raises(ValueError):
        percentile([1.0], 101.0)


def test_latency_summary() -> None:
    summary = latency_summary(list(range(1, 101)))
    # numpy.percentile(range(1, 101), [50, 95, 99]) -> 50.5, 95.05, 99.01
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p95"] == pytest.approx(95.05)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["n"] == 100
    flat = latency_summary([7.0] * 5)
    assert flat == {"p50": 7.0, "p95": 7.0, "p99": 7.0, "mean": 7.0, "n": 5}
    with pytest.raises(ValueError):
        latency_summary([])


# --- McNemar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "p", "direction"),
    [
        (10, 2, 0.03857421875, "candidate_worse"),  # brief: ~0.0386
        (2, 10, 0.03857421875, "candidate_better"),
        (30, 12, 0.007915897334896727, "candidate_worse"),
        (0, 5, 0.0625, "candidate_better"),
        (600, 500, 0.0028195449914364284, "candidate_worse"),  # large n: exact integer arithmetic
    ],
)
def test_mcnemar_exact_matches_scipy_binomtest(b: int, c: int, p: float, direction: str) -> None:
    result = mcnemar(b, c)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.direction == direction
    assert result.n_discordant == b + c


def test_mcnemar_mid_p() -> None:
    # 2 * (binom.cdf(2, 12, .5) - .5 * binom.pmf(2, 12, .5)) = 0.0224609375 (= 92/4096)
    result = mcnemar(10, 2)
    assert result.p_value_mid == pytest.approx(0.0224609375, rel=1e-12)
    assert result.p_value_mid < result.p_value


def test_mcnemar_edge_cases() -> None:
    none = mcnemar(0, 0)
    assert (none.p_value, none.p_value_mid, none.direction) == (1.0, 1.0, "no_change")
    tie = mcnemar(7, 7)
    assert (tie.p_value, tie.p_value_mid, tie.direction) == (1.0, 1.0, "no_change")
    # very large n stays finite and exact-ish (no float overflow in comb / 2**n)
    huge = mcnemar(5000, 5000)
    assert huge.p_value == 1.0
    assert 0.0 <= mcnemar(5200, 4800).p_value < 1e-4
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


def test_regression_verdict() -> None:
    assert regression(mcnemar(10, 2)) is True
    assert regression(mcnemar(2, 10)) is False  # significant, but an improvement
    assert significance(mcnemar(2, 10)) is Significance.IMPROVEMENT
    assert regression(mcnemar(10, 2), alpha=0.01) is False
    assert significance(mcnemar(0, 0)) is Significance.NO_SIGNIFICANT_CHANGE
    # b=5, c=0: exact p = 0.0625 (not significant), mid-p = 0.03125 (significant)
    five = mcnemar(5, 0)
    assert regression(five) is False
    assert regression(five, mid_p=True) is True
    assert isinstance(five, McNemarResult)


# --- paired bootstrap -----------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.6, 0.1, size=80).tolist()
    cand = (np.asarray(base) + rng.normal(0.02, 0.05, size=80)).tolist()
    a = paired_bootstrap_diff(base, cand, seed=42)
    b = paired_bootstrap_diff(base, cand, seed=42)
    c = paired_bootstrap_diff(base, cand, seed=43)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert isinstance(a, BootstrapResult)
    assert a.iterations == 2000 and a.n == 80 and a.confidence == 0.95


def test_bootstrap_ci_contains_true_difference() -> None:
    # Constructed sample: candidate = baseline + 0.1 + zero-mean noise with exactly mean 0,
    # so the observed (and true) mean difference is 0.1.
    rng = np.random.default_rng(3)
    base = rng.uniform(0.0, 1.0, size=200)
    noise = rng.normal(0.0, 0.05, size=200)
    noise -= noise.mean()
    cand = base + 0.1 + noise
    result = paired_bootstrap_diff(base.tolist(), cand.tolist(), iterations=4000, seed=0)
    assert result.mean_diff == pytest.approx(0.1, abs=1e-12)
    assert result.low < 0.1 < result.high
    assert result.excludes_zero()
    # the half-width is close to the normal-theory one: 1.96 * sd / sqrt(n)
    theory = 1.959964 * float(np.std(noise)) / math.sqrt(200)
    assert (result.high - result.low) / 2 == pytest.approx(theory, rel=0.15)


def test_bootstrap_edge_cases() -> None:
    same = paired_bootstrap_diff([0.5] * 10, [0.5] * 10)
    assert (same.mean_diff, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes_zero()
    shifted = paired_bootstrap_diff([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert shifted.low == pytest.approx(0.5) and shifted.high == pytest.approx(0.5)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap_diff([], [])
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0], iterations=0)


# --- two-proportion z -----------------------------------------------------------------------


def test_two_proportion_z_known_value() -> None:
    # 45/100 vs 30/100, pooled p = 0.375: z = 0.15 / sqrt(0.375 * 0.625 * 0.02) = 2.19089023...
    # p = 2 * scipy.stats.norm.sf(z) = 0.02845973691631055
    z, p = two_proportion_z(45, 100, 30, 100)
    assert z == pytest.approx(2.1908902300206647, rel=1e-12)
    assert p == pytest.approx(0.02845973691631055, rel=1e-9)
    z2, p2 = two_proportion_z(30, 100, 45, 100)
    assert z2 == pytest.approx(-z) and p2 == pytest.approx(p)


def test_two_proportion_z_edges() -> None:
    assert two_proportion_z(10, 10, 20, 20) == (0.0, 1.0)
    assert two_proportion_z(0, 10, 0, 20) == (0.0, 1.0)
    assert two_proportion_z(5, 10, 10, 20)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        two_proportion_z(1, 0, 1, 1)
    with pytest.raises(ValueError):
        two_proportion_z(3, 2, 1, 1)


def test_normal_cdf() -> None:
    assert normal_cdf(0.0) == 0.5
    assert normal_cdf(1.959963984540054) == pytest.approx(0.975, abs=1e-12)
    assert normal_cdf(-1.0) == pytest.approx(0.15865525393145707, abs=1e-12)  # scipy.stats.norm.cdf(-1)
