"""Analysis verdicts from real traces in a real store: each of the four outcomes, and the rules."""

from __future__ import annotations

import pytest

from lockgate.config.plans import MetricCheck, RolloutPlan
from lockgate.rollout.analysis import Analyzer, compare_rates, p95, probability_worse
from lockgate.rollout.verdicts import Verdict, combine
from tests.harness import store_at, unreachable_store
from tests.rollout_helpers import add_traffic

PLAN = RolloutPlan.model_validate({"steps": [{"canary": 10}, {"analysis": {"duration_s": 60}}, {"promote": {}}]})
T0 = 1_000_000.0


@pytest.fixture
def store(tmp_path):
    s = store_at(tmp_path / "db.sqlite3")
    s.migrate()
    return s


def test_combine_rules():
    S, F, I, E = Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.INCONCLUSIVE, Verdict.ERROR  # noqa: E741
    assert combine([(S, True), (S, False)]) is S
    assert combine([(S, True), (I, False)]) is S  # an optional check's silence does not hold a rollout
    assert combine([(S, True), (F, False)]) is F  # but its failure does
    assert combine([(I, True), (F, True)]) is F
    assert combine([(I, True), (S, True)]) is I
    assert combine([(E, True), (I, True)]) is E
    assert combine([(E, False), (S, True)]) is S


def test_probability_worse_is_deterministic_and_sensible():
    assert probability_worse(0, 500, 0, 500, 0.02) == probability_worse(0, 500, 0, 500, 0.02)
    assert probability_worse(0, 500, 0, 500, 0.02) < 0.01
    assert probability_worse(50, 500, 2, 500, 0.02) > 0.99
    # Known value: equal large samples, no tolerance -> about one half.
    assert probability_worse(100, 1000, 100, 1000, 0.0) == pytest.approx(0.5, abs=0.02)


def test_rates_need_the_minimum_sample_before_any_verdict():
    m = compare_rates("error_rate", 9, 10, 0, 10, tolerance=0.02, min_samples=50, required=True)
    assert m.verdict is Verdict.INCONCLUSIVE and "too little data" in m.note
    m = compare_rates("error_rate", 45, 50, 0, 50, tolerance=0.02, min_samples=50, required=True)
    assert m.verdict is Verdict.FAILED


def test_p95_nearest_rank():
    assert p95(list(range(1, 101))) == 95
    assert p95([5.0]) == 5.0
    assert p95([]) is None


def test_equal_releases_succeed(store):
    add_traffic(store, "r", 1, 400, ts=T0, failed=1)
    add_traffic(store, "r", 2, 400, ts=T0, failed=1)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    by_metric = {m.metric: m for m in a.measurements}
    assert by_metric["error_rate"].verdict is Verdict.SUCCESSFUL
    assert by_metric["p95_latency_ms"].verdict is Verdict.SUCCESSFUL
    assert by_metric["negative_feedback_rate"].verdict is Verdict.INCONCLUSIVE  # optional, no ratings
    assert a.verdict is Verdict.SUCCESSFUL


def test_failing_candidate_fails(store):
    add_traffic(store, "r", 1, 400, ts=T0, failed=1)
    add_traffic(store, "r", 2, 400, ts=T0, failed=40)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    assert a.verdict is Verdict.FAILED
    assert {m.metric for m in a.measurements if m.verdict is Verdict.FAILED} == {"error_rate"}


def test_slow_candidate_fails_on_latency(store):
    add_traffic(store, "r", 1, 200, ts=T0, latency_ms=100)
    add_traffic(store, "r", 2, 200, ts=T0, latency_ms=900)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    assert [m.metric for m in a.measurements if m.verdict is Verdict.FAILED] == ["p95_latency_ms"]


def test_guard_violations_fail(store):
    add_traffic(store, "r", 1, 300, ts=T0)
    add_traffic(store, "r", 2, 300, ts=T0, violations=60)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    assert a.verdict is Verdict.FAILED
    assert [m.metric for m in a.measurements if m.verdict is Verdict.FAILED] == ["guard_violation_rate"]


def test_too_little_traffic_is_inconclusive(store):
    add_traffic(store, "r", 1, 400, ts=T0)
    add_traffic(store, "r", 2, 12, ts=T0)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    assert a.verdict is Verdict.INCONCLUSIVE


def test_unreachable_store_is_an_error(tmp_path):
    store = unreachable_store(tmp_path)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=0, until=1, min_samples=1,
                                checks=[MetricCheck(metric="error_rate")])
    assert a.verdict is Verdict.ERROR
    assert "could not read" in a.measurements[0].note


def test_live_checks_compare_sampled_answers(store):
    plan = RolloutPlan.model_validate({"steps": [{"canary": 10}], "live_checks": [
        {"type": "not-icontains", "value": "as an ai"}]})
    add_traffic(store, "r", 1, 100, ts=T0, output="Our office opens at nine.")
    add_traffic(store, "r", 2, 100, ts=T0, output="As an AI, I cannot know that.")
    a = Analyzer(store).analyse("r", 2, 1, plan, since=T0 - 1, until=T0 + 10, min_samples=50,
                                checks=[MetricCheck(metric="live_check_failure_rate")])
    m = a.measurements[0]
    assert (m.candidate, m.stable) == (1.0, 0.0)
    assert m.verdict is Verdict.FAILED


def test_shadow_analysis_reads_shadow_answers(store):
    add_traffic(store, "r", 1, 200, ts=T0)
    add_traffic(store, "r", 2, 200, ts=T0, shadow=True, failed=100)
    a = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=50, shadow=True,
                                checks=[MetricCheck(metric="error_rate")])
    assert a.measurements[0].candidate_n == 200 and a.verdict is Verdict.FAILED
    served = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=50,
                                     checks=[MetricCheck(metric="error_rate")])
    assert served.measurements[0].candidate_n == 0  # shadow copies are not served traffic


def test_absolute_limits_look_at_the_trailing_window(store):
    add_traffic(store, "r", 2, 100, ts=T0 - 300, failed=100)  # old failures, outside the window
    add_traffic(store, "r", 2, 100, ts=T0 - 10, failed=2)
    limits = PLAN.rollback_when
    assert Analyzer(store).breaches("r", 2, limits, T0) == []
    add_traffic(store, "r", 2, 30, ts=T0 - 5, failed=30)
    breaches = Analyzer(store).breaches("r", 2, limits, T0)
    assert [b.metric for b in breaches] == ["error_rate"] and breaches[0].value > 0.05


def test_absolute_limits_never_reach_back_before_the_rollout(store):
    """A second rollout of the same candidate is not judged by the failures that ended the first."""
    add_traffic(store, "r", 2, 40, ts=T0 - 5, failed=40)
    limits = PLAN.rollback_when
    assert Analyzer(store).breaches("r", 2, limits, T0)
    assert Analyzer(store).breaches("r", 2, limits, T0, since=T0 - 1) == []
