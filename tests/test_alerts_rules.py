"""Alert rules as written in lockgate.yaml, and the pure decisions on them: judging a condition and
moving an alert's state."""

from __future__ import annotations

import pytest

from lockgate.alerts.judge import Reading, Status, WindowCounts, judge_burn_rate, judge_threshold
from lockgate.alerts.state import Notice, next_state
from lockgate.config import ConfigError
from lockgate.config.alerts import DEFAULT_BURN_WINDOWS, BurnRateRule, ThresholdRule
from lockgate.config.loader import parse_config
from tests.harness import ONE_ROUTE_YAML

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

BASE = ONE_ROUTE_YAML + "alerts:\n"


def parse(alerts_yaml: str):
    return parse_config(BASE + alerts_yaml, source="lockgate.yaml")


def problems(alerts_yaml: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(alerts_yaml)
    return str(info.value)


def test_the_issue_s_rules_parse():
    config = parse("""
  - {name: errors, route: echo, kind: threshold, metric: error_rate, above: 0.05, window_s: 900}
  - {name: slow, route: echo, kind: threshold, metric: p95_latency_ms, above: 10000, window_s: 900}
  - {name: complaints, route: echo, kind: threshold, metric: complaints, above: 3, window_s: 3600}
  - {name: cost, route: echo, kind: threshold, metric: cost_ratio, above: 2.0, window_s: 3600, baseline_s: 604800}
  - {name: unsure, route: echo, kind: threshold, metric: mean_confidence, below: 0.7}
  - name: availability
    route: echo
    kind: burn_rate
    slo: {objective: 0.99, metric: error_rate}
    actions:
      - webhook: {url: "https://hooks.example.com/x", retries: 5}
      - rollback: {}
      - kill_switch: {mode: static, message: "Back soon."}
      - incident: {severity: critical}
""")
    rules = {r.name: r for r in config.alerts}
    assert isinstance(rules["errors"], ThresholdRule) and rules["errors"].above == 0.05
    assert rules["unsure"].below == 0.7 and rules["unsure"].above is None
    slo = rules["availability"]
    assert isinstance(slo, BurnRateRule) and slo.windows == DEFAULT_BURN_WINDOWS
    assert [(w.long_s, w.short_s, w.factor, w.severity) for w in slo.windows] == [
        (3600, 300, 14.4, "critical"), (21600, 1800, 6, "medium")]
    assert [a.kind for a in slo.actions] == ["webhook", "rollback", "kill_switch", "incident"]
    assert slo.actions[0].webhook.retries == 5 and slo.slo.error_budget == pytest.approx(0.01)


def test_bad_rules_get_clear_errors_with_lines():
    text = problems("""
  - {name: a, route: echo, kind: threshold, metric: error_rate, above: 5}
  - {name: b, route: echo, kind: thresh, metric: error_rate, above: 0.1}
  - {name: c, route: echo, kind: threshold, metric: error_rate, above: 0.1, below: 0.01}
  - name: d
    route: echo
    kind: burn_rate
    slo: {objective: 0.99}
    windows: [{long_s: 60, short_s: 300, factor: 2, severity: high}]
  - name: e
    route: echo
    kind: threshold
    metric: error_rate
    above: 0.1
    actions: [{page: {}}, {kill_switch: {mode: static}}, {webhook: {url: "ftp://x"}}]
""")
    assert "lockgate.yaml:12: alerts.0: alert 'a': error_rate is a fraction between 0 and 1 (5% is 0.05)" in text
    assert "alerts.1: set `kind:` to `threshold` (a metric over a window) or `burn_rate` (an SLO)" in text
    assert "alerts.2: alert 'c': give exactly one of `above:` or `below:`" in text
    assert "alerts.3.windows.0: short_s (300) must be shorter than long_s (60)" in text
    assert "alerts.4.actions.0: unknown action 'page'; use one of: webhook, rollback, kill_switch, incident" in text
    assert "alerts.4.actions.1.kill_switch: a static kill switch needs the answer to give" in text
    assert "alerts.4.actions.2.webhook.url" in text


def test_references_and_names_are_checked():
    assert "alerts.0.route: unknown route 'nope'; use one of: echo" in problems(
        "  - {name: a, route: nope, kind: threshold, metric: error_rate, above: 0.1}\n")
    assert "two alerts are named 'a'" in problems(
        "  - {name: a, route: echo, kind: threshold, metric: error_rate, above: 0.1}\n"
        "  - {name: a, route: echo, kind: threshold, metric: complaints, above: 3}\n")
    assert "price set for metric p95_latency_ms, but only metric cost_ratio reads them" in problems(
        "  - {name: a, route: echo, kind: threshold, metric: p95_latency_ms, above: 1,"
        " price: {prompt_per_1k: 1, completion_per_1k: 1}}\n")
    assert "`windows:` is empty" in problems(
        "  - {name: a, route: echo, kind: burn_rate, slo: {objective: 0.9}, windows: []}\n")


def rule(**extra) -> ThresholdRule:
    spec = {"name": "r", "route": "echo", "kind": "threshold", "metric": "error_rate", "above": 0.05, **extra}
    return ThresholdRule.model_validate(spec)


def slo_rule(**extra) -> BurnRateRule:
    return BurnRateRule.model_validate({"name": "slo", "route": "echo", "kind": "burn_rate",
                                        "slo": {"objective": 0.99}, "min_samples": 10, **extra})


def test_threshold_judgement():
    fired = judge_threshold(rule(), Reading(0.08, 100))
    assert fired.status is Status.FIRING and fired.severity == "high"
    assert fired.summary == "error_rate 8.0% > 5.0% over 5m (100 samples)"
    assert judge_threshold(rule(), Reading(0.05, 100)).status is Status.OK  # strictly above fires
    low = judge_threshold(rule(metric="mean_confidence", above=None, below=0.7), Reading(None, 0, "no scores"))
    assert low.status is Status.NO_DATA and "no data (no scores)" in low.summary


def counts(**by_window: tuple[int, int]) -> dict[float, WindowCounts]:
    lengths = {"h1": 3600, "m5": 300, "h6": 21600, "m30": 1800}
    return {lengths[k]: WindowCounts(lengths[k], bad, n) for k, (bad, n) in by_window.items()}


def test_burn_rate_needs_both_windows_of_a_pair():
    # 20% errors over the hour is a burn of 20x (budget 1%) but the last 5 minutes are clean: not firing.
    cleared = judge_burn_rate(slo_rule(), counts(h1=(200, 1000), m5=(0, 100), h6=(200, 6000), m30=(0, 500)))
    assert cleared.status is Status.OK
    # Both windows of the fast pair above 14.4x: fires as critical, the most severe pair that fires.
    both = judge_burn_rate(slo_rule(), counts(h1=(200, 1000), m5=(30, 100), h6=(400, 6000), m30=(100, 500)))
    assert both.status is Status.FIRING and both.severity == "critical" and both.value == pytest.approx(20.0)
    assert "burning 20.0x over 1h and 30.0x over 5m, above 14.4x" in both.summary
    # Only the slow pair (6x) burns: a ticket-level firing.
    slow = judge_burn_rate(slo_rule(), counts(h1=(100, 1000), m5=(10, 100), h6=(480, 6000), m30=(40, 500)))
    assert slow.status is Status.FIRING and slow.severity == "medium"
    # Too few requests in the short window to tell, and no pair ok: no data, not ok.
    quiet = judge_burn_rate(slo_rule(), counts(h1=(200, 1000), m5=(1, 5), h6=(400, 6000), m30=(1, 5)))
    assert quiet.status is Status.NO_DATA


def test_state_fires_once_escalates_and_resolves():
    r = slo_rule()
    firing = judge_burn_rate(r, counts(h1=(100, 1000), m5=(10, 100), h6=(480, 6000), m30=(40, 500)))
    first = next_state(None, firing, r, now=100.0)
    assert first is not None and first.notice is Notice.FIRING and first.record.firing_since == 100.0
    stored = first.record
    assert next_state(stored, firing, r, now=110.0) is None  # still firing: nothing to write, nothing to send
    worse = judge_burn_rate(r, counts(h1=(200, 1000), m5=(30, 100), h6=(480, 6000), m30=(40, 500)))
    escalated = next_state(stored, worse, r, now=120.0)
    assert escalated.notice is Notice.ESCALATED and escalated.record.details["severity"] == "critical"
    assert escalated.record.details["escalated_from"] == "medium"
    unknown = judge_burn_rate(r, counts(h1=(200, 1000), m5=(0, 2), h6=(480, 6000), m30=(1, 2)))
    assert next_state(escalated.record, unknown, r, now=130.0) is None  # no data does not claim recovery
    ok = judge_burn_rate(r, counts(h1=(200, 1000), m5=(0, 100), h6=(480, 6000), m30=(0, 500)))
    resolved = next_state(escalated.record, ok, r, now=140.0)
    assert resolved.notice is Notice.RESOLVED and resolved.record.state == "ok"
    assert resolved.record.details["fired_at"] == 100.0 and resolved.record.firing_since is None
    # Traffic stops after the resolve: no data, and the last firing is still on record.
    quiet = next_state(resolved.record, unknown, r, now=150.0)
    assert quiet.record.state == "no_data" and quiet.notice is None
    assert quiet.record.details["fired_at"] == 100.0 and quiet.record.details["resolved_at"] == 140.0


def test_for_s_holds_a_firing_back_until_it_lasts():
    r = rule(for_s=30)
    hot, cool = Reading(0.5, 100), Reading(0.0, 100)
    pending = next_state(None, judge_threshold(r, hot), r, now=0.0)
    assert pending.record.state == "pending" and pending.notice is None
    assert next_state(pending.record, judge_threshold(r, hot), r, now=20.0) is None
    fired = next_state(pending.record, judge_threshold(r, hot), r, now=31.0)
    assert fired.notice is Notice.FIRING
    calmed = next_state(pending.record, judge_threshold(r, cool), r, now=10.0)
    assert calmed.record.state == "ok" and calmed.notice is None
    no_data = next_state(None, judge_threshold(r, Reading(None, 3, "3 requests")), r, now=0.0)
    assert no_data.record.state == "no_data"
