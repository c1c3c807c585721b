"""Live counters in Redis give rollout analysis and alert rules the same numbers, and so the same
verdicts, as the trace store does for the same traffic; recent windows only, and the store otherwise."""

from __future__ import annotations

import asyncio
import time

import pytest

from lockgate.alerts import measure
from lockgate.cluster.live import LiveCounters, RedisLiveWindows
from lockgate.config.loader import parse_config
from lockgate.config.plans import RolloutPlan
from lockgate.rollout.analysis import Analyzer
from lockgate.rollout.verdicts import Verdict
from tests.harness import ONE_ROUTE_YAML, store_at
from tests.redis_helpers import SHARED_REDIS_URL, closed_port_url, target
from tests.rollout_helpers import traffic

PLAN = RolloutPlan.model_validate({"steps": [{"canary": 10}, {"analysis": {"duration_s": 60}}, {"promote": {}}]})
T0 = 1_000_000.0


@pytest.fixture
def store(tmp_path):
    s = store_at(tmp_path / "db.sqlite3")
    s.migrate()
    return s


def count_in_redis(redis_target, traces: list[dict]) -> None:
    counters = LiveCounters(redis_target)
    for trace in traces:
        counters.record(trace)
    asyncio.run(counters.flush())


@pytest.mark.parametrize(("candidate", "expected"), [
    ({"failed": 1}, Verdict.SUCCESSFUL),
    ({"failed": 40}, Verdict.FAILED),
    ({"violations": 40}, Verdict.FAILED),
    ({"latency_ms": 900}, Verdict.FAILED),
], ids=["equal", "errors", "guard-violations", "slow"])
def test_analysis_reaches_the_same_verdict_from_redis_counters_as_from_the_store(store, redis_prefix, candidate,
                                                                                expected):
    traces = traffic("r", 1, 400, ts=T0, failed=1) + traffic("r", 2, 400, ts=T0, **candidate)
    store.insert_traces(traces)
    count_in_redis(target(SHARED_REDIS_URL, redis_prefix), traces)
    live = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix), store, clock=lambda: T0 + 10)

    from_store = Analyzer(store).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    from_redis = Analyzer(store, windows=live).analyse("r", 2, 1, PLAN, since=T0 - 1, until=T0 + 10, min_samples=100)
    assert from_store.verdict is expected
    assert from_redis.verdict is expected
    assert ([(m.metric, m.verdict, m.candidate_n, m.stable_n) for m in from_redis.measurements]
            == [(m.metric, m.verdict, m.candidate_n, m.stable_n) for m in from_store.measurements])


def test_redis_windows_hold_the_same_counts_as_the_store(store, redis_prefix):
    traces = (traffic("r", 1, 50, ts=T0, failed=3, violations=2, prompt_tokens=7, completion_tokens=11)
              + traffic("r", 2, 30, ts=T0, shadow=True, failed=1))
    store.insert_traces(traces)
    count_in_redis(target(SHARED_REDIS_URL, redis_prefix), traces)
    live = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix), store, clock=lambda: T0 + 10)

    def shape(windows):
        return sorted((w.release, w.shadow, w.requests, w.failed, w.guard_violations, w.grounding_failures,
                       len(w.latencies_ms), w.prompt_tokens, w.completion_tokens) for w in windows)

    assert shape(live.release_window("r", T0 - 1, T0 + 10)) == shape(store.release_window("r", T0 - 1, T0 + 10))
    assert shape(live.release_window("r", T0 - 1, T0 + 10)) == [("r@1", False, 50, 3, 2, 0, 47, 350, 550),
                                                               ("r@2", True, 30, 1, 0, 0, 29, 0, 0)]


def test_traffic_before_the_window_start_is_never_counted(store, redis_prefix):
    """An earlier rollout's failures must not judge this one: buckets that began before `since` are left out."""
    count_in_redis(target(SHARED_REDIS_URL, redis_prefix), traffic("r", 2, 20, ts=T0, failed=20, spread_s=0.5))
    live = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix), store, clock=lambda: T0 + 10)
    assert live.release_window("r", T0 + 0.5, T0 + 10) == []
    assert [w.failed for w in live.release_window("r", T0, T0 + 10)] == [20]


def test_windows_beyond_the_retention_or_while_redis_is_down_come_from_the_store(store, redis_prefix):
    store.insert_traces(traffic("r", 1, 5, ts=T0))
    recent = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix, live_retention_s=60), store,
                              clock=lambda: T0 + 30)
    assert recent.release_window("r", T0 - 1, T0 + 10) == []  # nothing was counted in Redis
    old = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix, live_retention_s=60), store,
                           clock=lambda: T0 + 600)
    assert [w.requests for w in old.release_window("r", T0 - 1, T0 + 10)] == [5]
    down = RedisLiveWindows(target(closed_port_url(), "t"), store, clock=lambda: T0 + 10)
    assert [w.requests for w in down.release_window("r", T0 - 1, T0 + 10)] == [5]


def test_counting_never_fails_when_redis_is_unreachable():
    counters = LiveCounters(target(closed_port_url(), "t"))
    counters.record(traffic("r", 1, 1, ts=T0)[0])
    asyncio.run(counters.flush())  # dropped and logged, not raised
    asyncio.run(counters.flush())  # and nothing piles up for later


ALERTS = ONE_ROUTE_YAML + """alerts:
  - {name: errors, route: echo, kind: threshold, metric: error_rate, above: 0.05, window_s: 60, min_samples: 20}
  - {name: slow, route: echo, kind: threshold, metric: p95_latency_ms, above: 500, window_s: 60, min_samples: 20}
  - name: slo
    route: echo
    kind: burn_rate
    slo: {objective: 0.9}
    windows: [{long_s: 50, short_s: 10, factor: 2, severity: critical}]
    min_samples: 10
"""


def test_alert_rules_judge_redis_counters_as_they_judge_the_store(store, redis_prefix):
    now = time.time()
    traces = traffic("echo", 1, 40, ts=now - 40, failed=20) + traffic("echo", 1, 30, ts=now - 8, failed=10,
                                                                      latency_ms=700)
    store.insert_traces(traces)
    count_in_redis(target(SHARED_REDIS_URL, redis_prefix), traces)
    live = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix), store)
    for rule in parse_config(ALERTS, source="test.yaml").alerts:
        from_store = measure.evaluate(store, rule, now)
        from_redis = measure.evaluate(store, rule, now, windows=live)
        assert from_store.status == from_redis.status == "firing", rule.name
        if rule.name == "slow":  # p95 from the histogram: the upper edge of the bucket the store's p95 falls in
            assert (from_store.value, from_redis.value) == (700, 750)
        else:
            assert from_redis.value == from_store.value, rule.name
