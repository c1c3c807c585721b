"""Drift statistics against hand-computed values, and the verdict rule across sample sizes."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from lockgate.drift import stats
from lockgate.drift.analysis import PromptMemo, WindowSample, compare, topic_distances
from lockgate.drift.features import Observation
from lockgate.drift.stats import DriftSettings, Verdict

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

SETTINGS = DriftSettings()
LANGUAGES = ["en"] * 70 + ["de"] * 15 + ["fr"] * 10 + ["es"] * 3 + ["it", "und"]


# -- each statistic against known values ------------------------------------------------------------


def test_ks_statistic_by_hand() -> None:
    result = stats.compare_numeric([1, 2, 3, 4] * 10, [3, 4, 5, 6] * 10, SETTINGS)
    assert result.test == "ks"
    assert result.statistic == pytest.approx(0.5)  # the empirical CDFs differ by 1/2 between 2 and 4
    assert result.p_value < 1e-3


def test_normed_wasserstein_by_hand() -> None:
    # Moving every value by 1 costs 1; the reference's standard deviation is sqrt(1.25).
    assert stats.normed_wasserstein(np.array([0.0, 1, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(
        1 / math.sqrt(1.25))
    assert stats.normed_wasserstein(np.array([5.0] * 10), np.array([5.0] * 7)) == 0.0
    # a constant reference is measured in the pooled spread instead of dividing by zero
    constant = stats.normed_wasserstein(np.array([0.0] * 4), np.array([0.0, 0, 2, 2]))
    assert constant == pytest.approx(1.0 / np.std([0, 0, 0, 0, 0, 0, 2, 2]))


def test_jensen_shannon_by_hand() -> None:
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4): JSD = H(M) - (H(P) + H(Q)) / 2 in bits.
    h_m = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    expected = math.sqrt(h_m - 0.5)
    assert stats.js_distance(np.array([50, 50]), np.array([80, 0])) == pytest.approx(expected)
    assert stats.js_distance(np.array([3, 7]), np.array([30, 70])) == pytest.approx(0.0, abs=1e-9)
    assert stats.js_distance(np.array([10, 0]), np.array([0, 10])) == pytest.approx(1.0)


def test_chi_square_by_hand() -> None:
    # [[30, 10], [20, 20]]: expected 25/15 per row, X2 = 2 * (25/25 + 25/15) = 16/3, one degree of freedom.
    test, chi2, p_value = stats.homogeneity_test(np.array([30, 10]), np.array([20, 20]))
    assert test == "chi-square"
    assert chi2 == pytest.approx(16 / 3)
    assert p_value == pytest.approx(math.erfc(math.sqrt(16 / 3 / 2)))  # chi-square(1) tail = erfc(sqrt(x/2))


def test_fisher_exact_on_small_tables_by_hand() -> None:
    table = [[1, 9], [6, 4]]  # expected count of the first column 3.5 < 5: chi-square would be unreliable
    test, odds, p_value = stats.homogeneity_test(np.array(table[0]), np.array(table[1]))
    assert test == "fisher"
    assert odds == pytest.approx((1 * 4) / (9 * 6))

    def prob(a: int) -> float:  # hypergeometric: first cell = a with the margins fixed
        return math.comb(10, a) * math.comb(10, 7 - a) / math.comb(20, 7)

    observed = prob(1)
    expected_p = sum(prob(a) for a in range(0, 8) if prob(a) <= observed * (1 + 1e-7))
    assert p_value == pytest.approx(expected_p)


def test_psi_by_hand() -> None:
    # shares 1/2, 1/2 -> 1/4, 3/4: PSI = (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert stats._psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(expected)
    result = stats.compare_categorical(["a"] * 50 + ["b"] * 50, ["a"] * 25 + ["b"] * 75, SETTINGS)
    assert result.psi == pytest.approx(expected)
    # numeric PSI uses the reference's deciles; the same data gives 0
    values = np.arange(1000, dtype=float)
    assert stats.psi_numeric(values, values) == pytest.approx(0.0)


def test_rare_categories_are_lumped() -> None:
    labels, ref, cur = stats.lump_rare(Counter({"en": 40, "de": 10, "xx": 2}), Counter({"en": 30, "de": 12, "yy": 1}))
    assert labels == ["en", "de", stats.OTHER]
    assert ref.tolist() == [40, 10, 2] and cur.tolist() == [30, 12, 1]


def test_one_category_everywhere_is_no_drift() -> None:
    result = stats.compare_categorical(["answer"] * 100, ["answer"] * 80, SETTINGS)
    assert result.verdict is Verdict.NO_DRIFT and result.score == 0.0 and result.p_value == 1.0


# -- the verdict across sample sizes --------------------------------------------------------------


@pytest.mark.parametrize("n", [50, 500, 20_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_distribution_is_not_drift_at_any_size(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    numeric = stats.compare_numeric(rng.lognormal(4, 1, n), rng.lognormal(4, 1, n), SETTINGS)
    categorical = stats.compare_categorical(list(rng.choice(LANGUAGES, n)), list(rng.choice(LANGUAGES, n)),
                                            SETTINGS)
    assert numeric.verdict is Verdict.NO_DRIFT, numeric
    assert categorical.verdict is Verdict.NO_DRIFT, categorical
    assert numeric.regime == ("large" if n >= SETTINGS.large_sample else "small")


@pytest.mark.parametrize("n", [50, 500, 20_000])
def test_shifted_distribution_is_drift_at_every_size(n: int) -> None:
    rng = np.random.default_rng(7)
    longer = stats.compare_numeric(rng.lognormal(4, 1, n), rng.lognormal(4.8, 1, n), SETTINGS)  # prompts x2.2
    other_language = stats.compare_categorical(list(rng.choice(LANGUAGES, n)),
                                               list(rng.choice(["de"] * 60 + ["en"] * 40, n)), SETTINGS)
    assert longer.verdict is Verdict.DRIFT and longer.score > SETTINGS.numeric_threshold
    assert other_language.verdict is Verdict.DRIFT and other_language.score > SETTINGS.categorical_threshold


def test_a_difference_too_small_to_matter_is_not_drift_however_large_the_sample() -> None:
    # A twentieth of a standard deviation: on 20 000 values a test calls it real, the effect size says small.
    rng = np.random.default_rng(11)
    result = stats.compare_numeric(rng.normal(0, 1, 20_000), rng.normal(0.05, 1, 20_000), SETTINGS)
    assert result.p_value < SETTINGS.alpha  # what p-values alone would alarm on
    assert result.score < SETTINGS.numeric_threshold
    assert result.verdict is Verdict.NO_DRIFT


def test_psi_as_the_effect_size() -> None:
    rng = np.random.default_rng(5)
    psi_settings = DriftSettings(effect="psi")
    same = stats.compare_numeric(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000), psi_settings)
    moved = stats.compare_numeric(rng.normal(0, 1, 5000), rng.normal(1, 1, 5000), psi_settings)
    assert same.score_name == "psi" and same.threshold == stats.PSI_THRESHOLD
    assert same.verdict is Verdict.NO_DRIFT and moved.verdict is Verdict.DRIFT


def test_too_few_values_are_not_judged() -> None:
    result = stats.compare_numeric([1.0] * 10, [2.0] * 100, SETTINGS)
    assert result.verdict is Verdict.INSUFFICIENT


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DriftSettings(alpha=1.5)
    with pytest.raises(ValueError, match="min_samples"):
        DriftSettings(min_samples=1)


# -- topic distances ------------------------------------------------------------------------------


def _cloud(rng: np.random.Generator, center: np.ndarray, n: int, spread: float = 0.6) -> np.ndarray:
    points = center + spread * rng.normal(size=(n, center.size)) / math.sqrt(center.size)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize("n", [50, 500, 20_000])
def test_topic_of_the_same_cloud_is_not_drift(n: int) -> None:
    rng = np.random.default_rng(3)
    center = rng.normal(size=384)
    center /= np.linalg.norm(center)
    ref_d, cur_d = topic_distances(_cloud(rng, center, n), _cloud(rng, center, n))
    assert stats.compare_numeric(ref_d, cur_d, SETTINGS).verdict is Verdict.NO_DRIFT


def test_leave_one_out_keeps_small_references_honest() -> None:
    # Against a centroid it helped make, each of 40 reference points looks closer than new points of the
    # same cloud; leave-one-out removes that bias (averaged over 20 draws to see past the noise).
    rng = np.random.default_rng(4)
    center = rng.normal(size=384)
    center /= np.linalg.norm(center)
    loo_gap, in_sample_gap = [], []
    for _ in range(20):
        reference, current = _cloud(rng, center, 40, spread=2.0), _cloud(rng, center, 1000, spread=2.0)
        ref_d, cur_d = topic_distances(reference, current)
        centroid = reference.mean(axis=0)
        in_sample = 1 - reference @ centroid / np.linalg.norm(centroid)
        loo_gap.append(ref_d.mean() - cur_d.mean())
        in_sample_gap.append(in_sample.mean() - cur_d.mean())
    assert np.mean(in_sample_gap) < -0.02  # the bias leave-one-out is there to remove
    assert abs(np.mean(loo_gap)) < 0.2 * abs(np.mean(in_sample_gap))


def test_topic_of_another_cloud_is_drift() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=384), rng.normal(size=384)
    ref_d, cur_d = topic_distances(_cloud(rng, a / np.linalg.norm(a), 60), _cloud(rng, b / np.linalg.norm(b), 60))
    assert stats.compare_numeric(ref_d, cur_d, SETTINGS).verdict is Verdict.DRIFT


# -- whole windows ----------------------------------------------------------------------------------


def _traffic(rng: np.random.Generator, n: int, *, refusal_rate: float = 0.05, scale: float = 1.0) -> list[Observation]:
    out = []
    for _ in range(n):
        prompt_tokens = int(rng.lognormal(3, 0.6) * scale) + 1
        out.append(Observation(prompt_tokens=prompt_tokens, completion_tokens=int(rng.lognormal(4, 0.5)) + 1,
                               guard_action=str(rng.choice(["allow"] * 95 + ["redact"] * 4 + ["block"])),
                               guard_scores={"input.injection": float(rng.beta(1, 20))},
                               refused=bool(rng.random() < refusal_rate)))
    return out


@pytest.mark.parametrize("n", [50, 500, 20_000])
def test_same_distribution_windows_are_not_drift_at_any_size(n: int) -> None:
    rng = np.random.default_rng(n)
    report = compare("r", WindowSample("ref", _traffic(rng, n)), WindowSample("cur", _traffic(rng, n)),
                     topic=False, language=False)
    judged = {f.name: f.verdict for f in report.features}
    assert judged.keys() >= {"prompt_tokens", "completion_tokens", "refusal", "guard_action", "guard.input.injection"}
    assert report.verdict is Verdict.NO_DRIFT, judged
    assert "prompt_chars" not in judged  # no prompts recorded: not compared, and said so
    assert any("prompts are missing" in note for note in report.notes)


def test_shifted_windows_name_the_features_that_moved() -> None:
    rng = np.random.default_rng(12)
    report = compare("r", WindowSample("ref", _traffic(rng, 400)),
                     WindowSample("cur", _traffic(rng, 400, refusal_rate=0.3, scale=3.0)),
                     topic=False, language=False)
    assert report.verdict is Verdict.DRIFT
    assert {f.name for f in report.drifted} == {"prompt_tokens", "refusal"}
    assert report.as_dict()["verdict"] == "drift"


def test_a_feature_missing_from_one_window_is_unavailable() -> None:
    rng = np.random.default_rng(2)
    with_outputs = [Observation(prompt="hi there", output="o" * int(rng.integers(5, 50))) for _ in range(40)]
    without = [Observation(prompt="hi there") for _ in range(40)]
    report = compare("r", WindowSample("ref", without), WindowSample("cur", with_outputs), topic=False,
                     language=False)
    by_name = {f.name: f for f in report.features}
    assert by_name["output_chars"].verdict is Verdict.UNAVAILABLE
    assert "reference" in by_name["output_chars"].note
    assert by_name["prompt_chars"].verdict is Verdict.NO_DRIFT


def test_alpha_is_shared_by_the_features_judged() -> None:
    rng = np.random.default_rng(6)
    report = compare("r", WindowSample("ref", _traffic(rng, 100)), WindowSample("cur", _traffic(rng, 100)),
                     topic=False, language=False)
    judged = [f for f in report.features if f.test is not None and f.verdict is not Verdict.INSUFFICIENT]
    assert judged and all(f.test.alpha == pytest.approx(SETTINGS.alpha / len(judged)) for f in judged)


def test_prompt_memo_does_each_prompt_once() -> None:
    from lockgate.embeddings.minilm import embed

    calls: list[list[str]] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return embed(texts)

    memo = PromptMemo(capacity=3)
    first = memo.embeddings(["a cat", "a dog", "a cat"], counting)
    assert calls == [["a cat", "a dog"]]
    np.testing.assert_allclose(first, embed(["a cat", "a dog", "a cat"]), atol=1e-5)
    second = memo.embeddings(["a dog", "a bird"], counting)
    assert calls[-1] == ["a bird"]
    np.testing.assert_allclose(second[0], first[1])
    memo.embeddings(["x", "y"], counting)  # over capacity: the least recently used ("a cat", "a dog") go
    memo.embeddings(["a cat", "a bird"], counting)
    assert calls[-1] == ["a cat"]
    assert memo.languages(["Wie setze ich mein Passwort zurück?", "ok"]) == ["de", "und"]
    # a window with a memo gives what one without it gives
    observations = [Observation(prompt=p) for p in ("a cat", "Wie setze ich mein Passwort zurück?")]
    with_memo = WindowSample("w", observations, memo=memo)
    without = WindowSample("w", observations)
    assert with_memo.languages() == without.languages()
    np.testing.assert_allclose(with_memo.embeddings(embed), without.embeddings(embed), atol=1e-5)
