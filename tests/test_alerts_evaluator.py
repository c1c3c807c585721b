"""The alert evaluator against traces in a real store: thresholds, burn rates, de-duplication across
ticks, restarts and replicas, actions, and webhooks delivered to a real HTTP server."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from lockgate.alerts.evaluator import AlertEvaluator
from lockgate.alerts.webhook import WebhookSender
from lockgate.config.loader import parse_config
from lockgate.config.plans import RolloutPlan
from lockgate.control import commands
from lockgate.control.state import RolloutStatus
from lockgate.rollout import machine
from lockgate.store import SqlStore
from tests.harness import store_at
from tests.rollout_helpers import add_traffic
from tests.webhook_receiver import WebhookReceiver

CONFIG = """
version: 1
backends:
  up: {{kind: openai, base_url: "http://127.0.0.1:9"}}
routes:
  echo:
    serve: v1
    releases:
      v1: {{backend: up, model: ok}}
alerts:
{alerts}
"""


@pytest.fixture
def store(tmp_path):
    s = store_at(tmp_path / "db.sqlite3")
    s.migrate()
    return s


def rules(alerts_yaml: str):
    return parse_config(CONFIG.format(alerts=alerts_yaml), source="test.yaml").alerts


def evaluator(store, alerts_yaml: str, **kwargs) -> AlertEvaluator:
    return AlertEvaluator(store, rules(alerts_yaml), **kwargs)


def audit(store, prefix: str = "alert."):
    return [r for r in store.list_audit() if r.action.startswith(prefix)]


ERRORS = "  - {name: errors, route: echo, kind: threshold, metric: error_rate, above: 0.05, window_s: 60, " \
         "min_samples: 20, evaluate_every_s: 0.1}"


def test_threshold_fires_once_while_firing_and_resolves_when_the_window_clears(store):
    now = time.time()
    add_traffic(store, "echo", 1, 50, ts=now - 30, failed=10)
    ev = evaluator(store, ERRORS)
    first = ev.tick(now)
    assert first["errors"].notice == "firing" and first["errors"].record.details["severity"] == "high"
    for i in range(1, 20):
        assert ev.tick(now + i) == {}  # firing all along: nothing new written, nothing sent
    fired = audit(store)
    assert [r.action for r in fired] == ["alert.fire"]
    assert fired[0].target == "echo" and fired[0].details["value"] == pytest.approx(0.2)
    assert fired[0].details["summary"] == "error_rate 20.0% > 5.0% over 1m (50 samples)"
    # A minute later the failures have left the window; clean traffic fills it.
    add_traffic(store, "echo", 1, 40, ts=now + 50)
    resolved = ev.tick(now + 100)
    assert resolved["errors"].notice == "resolved"
    assert [r.action for r in audit(store)] == ["alert.fire", "alert.resolve"]
    state = store.get_alert_state("errors")
    assert state.state == "ok" and state.details["fired_at"] == now and state.details["resolved_at"] == now + 100


def test_too_little_data_is_no_data_never_ok(store):
    now = time.time()
    add_traffic(store, "echo", 1, 5, ts=now - 10)
    ev = evaluator(store, ERRORS + """
  - {name: unsure, route: echo, kind: threshold, metric: mean_confidence, below: 0.7, evaluate_every_s: 0.1}""")
    ev.tick(now)
    errors, unsure = store.get_alert_state("errors"), store.get_alert_state("unsure")
    assert errors.state == "no_data" and "5 requests, 20 needed" in errors.details["summary"]
    assert unsure.state == "no_data" and "traces carry no confidence score" in unsure.details["summary"]
    assert audit(store) == []


def test_mean_confidence_reads_the_traces_confidence_where_they_carry_one(store):
    now = time.time()
    scored = [{"trace_id": f"c{i}", "ts": now - 10 + i * 0.1, "route": "echo", "release": "echo@1", "status": 200,
               "outcome": "ok", "latency_ms": 50.0, "confidence": 0.5 if i % 2 else 0.7} for i in range(30)]
    store.insert_traces(scored)
    add_traffic(store, "echo", 1, 30, ts=now - 10)  # answers without a score are not counted as anything
    ev = evaluator(store, """
  - {name: unsure, route: echo, kind: threshold, metric: mean_confidence, below: 0.7, min_samples: 20}""")
    fired = ev.tick(now)["unsure"]
    assert fired.notice == "firing" and fired.record.details["value"] == pytest.approx(0.6)
    assert "mean_confidence 0.6 < 0.7 over 5m (30 samples)" == fired.record.details["summary"]


def test_latency_complaints_and_cost(store):
    now = time.time()
    add_traffic(store, "echo", 1, 30, ts=now - 20, latency_ms=12_000, prompt_tokens=80, completion_tokens=20)
    add_traffic(store, "echo", 1, 100, ts=now - 600, spread_s=500, prompt_tokens=8, completion_tokens=2)
    ids = [t["trace_id"] for t in store.recent_traces(limit=4, route="echo")]
    store.insert_feedback([{"feedback_id": f"f{i}", "request_id": tid, "ts": now - 5, "rating": "down", "score": 0.0,
                            "rater": "user"} for i, tid in enumerate(ids)])
    store.link_feedback()
    ev = evaluator(store, """
  - {name: slow, route: echo, kind: threshold, metric: p95_latency_ms, above: 10000, window_s: 60}
  - {name: complaints, route: echo, kind: threshold, metric: complaints, above: 3, window_s: 3600}
  - {name: cost, route: echo, kind: threshold, metric: cost_ratio, above: 2, window_s: 60, baseline_s: 540}
  - name: cost-per-request
    route: echo
    kind: threshold
    metric: cost_ratio
    above: 2
    window_s: 60
    baseline_s: 540
    per_request: true
    price: {prompt_per_1k: 1, completion_per_1k: 3}""")
    fired = ev.tick(now)
    assert set(fired) == {"slow", "complaints", "cost", "cost-per-request"}
    assert all(t.notice == "firing" for t in fired.values())
    values = {r.details["alert"]: r.details["value"] for r in audit(store)}
    assert values["slow"] == 12_000 and values["complaints"] == 4
    # 3000 tokens in 60 s against 1000 tokens in the 540 s before: 50 a second against 1.85.
    assert values["cost"] == pytest.approx((30 * 100 / 60) / (100 * 10 / 540))
    # Per request, priced: (80 + 3 * 20) / (8 + 3 * 2) = 10x.
    assert values["cost-per-request"] == pytest.approx(10.0)


BURN = """  - name: slo
    route: echo
    kind: burn_rate
    slo: {objective: 0.9}
    windows: [{long_s: 60, short_s: 10, factor: 2, severity: critical}]
    min_samples: 10
    evaluate_every_s: 0.1"""


def test_burn_rate_fires_only_when_both_windows_burn_and_resolves_when_the_short_one_clears(store):
    now = time.time()
    # 50% errors earlier in the hour-long (here: minute-long) window, none in the last 10 s.
    add_traffic(store, "echo", 1, 40, ts=now - 40, failed=20)
    add_traffic(store, "echo", 1, 20, ts=now - 8)
    ev = evaluator(store, BURN)
    ev.tick(now)
    assert store.get_alert_state("slo").state == "ok"  # the long window burns at 3.3x, the short one at 0x
    add_traffic(store, "echo", 1, 20, ts=now + 1, failed=10)
    fired = ev.tick(now + 3)
    assert fired["slo"].notice == "firing"
    windows = fired["slo"].record.details["condition"]["windows"]
    assert windows[0]["long_burn"] > 2 and windows[0]["short_burn"] > 2
    add_traffic(store, "echo", 1, 30, ts=now + 5, spread_s=8)
    assert ev.tick(now + 8) == {}  # the failures are still in the short window
    resolved = ev.tick(now + 14)
    assert resolved["slo"].notice == "resolved"
    long_burn = resolved["slo"].record.details["condition"]["windows"][0]["long_burn"]
    assert long_burn > 2  # the long window still burns: the short one clearing is what resolves


class RacingStore:
    """A real store whose first read of an alert's state lets another evaluator run before it returns: the
    race two replicas run into when they see the same change at the same moment, made to happen every time."""

    def __init__(self, store: SqlStore, other_goes_first) -> None:
        self._store, self._other = store, other_goes_first

    def get_alert_state(self, alert: str):
        record = self._store.get_alert_state(alert)
        if self._other is not None:
            other, self._other = self._other, None
            other()
        return record

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_fires_once_across_two_evaluators_and_a_restart(tmp_path, store):
    now = time.time()
    add_traffic(store, "echo", 1, 50, ts=now - 5, failed=25)
    spec = ERRORS.replace("evaluate_every_s: 0.1", "evaluate_every_s: 0.1, actions: [{incident: {}}]")
    # Two replicas, each with its own connection: the second decides to fire on the state it read, but the
    # first fires in between; the second's compare-and-set loses, it reads again and stays quiet.
    first = evaluator(store_at(tmp_path / "db.sqlite3"), spec)
    second = evaluator(RacingStore(store_at(tmp_path / "db.sqlite3"), lambda: first.tick(now)), spec)
    assert second.tick(now) == {}
    assert store.get_alert_state("errors").state == "firing"
    for i in range(1, 20):
        assert first.tick(now + i * 0.1) == second.tick(now + i * 0.1) == {}
    assert [r.action for r in audit(store)] == ["alert.fire", "alert.actions"]
    assert len(store.list_incidents()) == 1
    restarted = evaluator(store_at(tmp_path / "db.sqlite3"), spec)
    assert restarted.tick(now + 5) == {}  # the firing is in the store, not in the process that saw it


def plan_with_pause() -> RolloutPlan:
    return RolloutPlan.model_validate({"steps": [{"canary": {"weight": 50}}, {"pause": {}}, {"promote": {}}],
                                       "rollback_when": []})


def test_rollback_and_incident_actions(store):
    commands.reconcile(store, {"echo": 1})
    commands.update_state(store, "echo", lambda s: machine.start(s, candidate=2, plan_name="p", plan=plan_with_pause(),
                                                                 actor="ann"), actor="ann")
    now = time.time()
    add_traffic(store, "echo", 1, 30, ts=now - 5)
    add_traffic(store, "echo", 2, 30, ts=now - 5, failed=30)
    ev = evaluator(store, ERRORS.replace("evaluate_every_s: 0.1", "evaluate_every_s: 0.1, actions: "
                                         "[{incident: {severity: critical}}, {rollback: {}}]"))
    ev.tick(now)
    state = commands.state_of(store, "echo")
    assert state.rollout.status is RolloutStatus.ROLLED_BACK and state.stable == 1
    assert state.rollout.end_reason.startswith("rolled back by alert:errors: alert errors (high): error_rate 50.0%")
    actions = [r.action for r in store.list_audit()]
    # The firing first, then the rollback, then the incident (mitigation before paperwork).
    assert actions[-4:] == ["alert.fire", "rollout.rollback", "incident.open", "alert.actions"]
    (incident,) = store.list_incidents()
    assert incident.severity == "critical" and incident.alert == "errors" and incident.opened_by == "alert:errors"
    done = store.list_audit()[-1].details["actions"]
    assert [(a["kind"], a["outcome"]) for a in done] == [("rollback", "done"), ("incident", "done")]
    assert store.get_alert_state("errors").details["incident"] == incident.ref
    # Resolving the alert mitigates the incident it opened; a person still resolves it.
    add_traffic(store, "echo", 1, 40, ts=now + 70)
    ev.tick(now + 100)
    assert store.get_incident(incident.incident_id).status == "mitigated"


def test_without_a_rollout_the_rollback_is_skipped_and_noted_and_the_kill_switch_acts(store):
    commands.reconcile(store, {"echo": 1})
    now = time.time()
    add_traffic(store, "echo", 1, 30, ts=now - 5, failed=30)
    ev = evaluator(store, ERRORS.replace("evaluate_every_s: 0.1", "evaluate_every_s: 0.1, actions: "
                                         "[{rollback: {}}, {kill_switch: {mode: static, message: Back soon.}}]"))
    ev.tick(now)
    state = commands.state_of(store, "echo")
    assert state.kill_switch.mode == "static" and state.kill_switch.set_by == "alert:errors"
    results = store.get_alert_state("errors").details["actions"]
    assert results[0] == {"kind": "rollback", "outcome": "skipped", "note": "no rollout in progress on echo"}
    assert results[1]["kind"] == "kill_switch" and results[1]["outcome"] == "done"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_webhook_is_retried_until_delivered_and_keeps_fire_before_resolve(store):
    now = time.time()
    add_traffic(store, "echo", 1, 50, ts=now - 30, failed=10)
    with WebhookReceiver(fail_first=2) as receiver:
        spec = ERRORS.replace("name: errors", "name: hooked").replace(
            "evaluate_every_s: 0.1", f"evaluate_every_s: 0.1, runbook: 'https://runbooks/errors', actions: "
            f"[{{webhook: {{url: '{receiver.url}', retries: 3, backoff_s: 0.2}}}}]")
        ev = evaluator(store, spec)
        retries_before = counter("lockgate_alert_webhook_retries_total", alert="hooked")
        ev.tick(now)
        add_traffic(store, "echo", 1, 40, ts=now + 50)
        ev.tick(now + 100)  # resolved while the firing notice is still being retried
        received = receiver.wait_for(lambda got: len(got) == 2)
        ev.stop()
    assert len(receiver.attempts) == 4  # two failures, then the firing, then the resolve
    firing, resolved = received
    assert firing["state"] == "firing" and resolved["state"] == "resolved"
    assert firing["fingerprint"] == resolved["fingerprint"] and firing["started_at"] == resolved["started_at"] == now
    assert firing["alert"] == "hooked" and firing["route"] == "echo" and firing["threshold"] == 0.05
    assert firing["value"] == pytest.approx(0.2) and firing["window_s"] == 60
    assert firing["runbook"] == "https://runbooks/errors" and resolved["resolved_at"] == now + 100
    assert counter("lockgate_alert_webhook_retries_total", alert="hooked") - retries_before == 2


def test_a_webhook_that_keeps_failing_is_counted_and_never_stops_the_evaluator(store):
    now = time.time()
    add_traffic(store, "echo", 1, 50, ts=now - 30, failed=10)
    with WebhookReceiver(fail_first=100, fail_status=500) as receiver:
        spec = ERRORS.replace("name: errors", "name: unlucky").replace(
            "evaluate_every_s: 0.1", f"evaluate_every_s: 0.1, actions: "
            f"[{{webhook: {{url: '{receiver.url}', retries: 1, backoff_s: 0.05}}}}, {{incident: {{}}}}]")
        failed_before = counter("lockgate_alert_webhook_deliveries_total", alert="unlucky", outcome="failed")
        sender = WebhookSender()
        ev = evaluator(store, spec, sender=sender)
        assert ev.tick(now)["unlucky"].notice == "firing"
        deadline = time.monotonic() + 10
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        attempts = len(receiver.attempts)
    assert attempts == 2  # the first try and one retry
    assert counter("lockgate_alert_webhook_deliveries_total", alert="unlucky", outcome="failed") - failed_before == 1
    # A refused connection (nothing listens any more) fails the same way, and evaluation goes on.
    add_traffic(store, "echo", 1, 40, ts=now + 50)
    assert ev.tick(now + 100)["unlucky"].notice == "resolved"
    ev.stop()
    assert counter("lockgate_alert_webhook_deliveries_total", alert="unlucky", outcome="failed") - failed_before == 2
    assert store.list_incidents()[0].status == "mitigated"
