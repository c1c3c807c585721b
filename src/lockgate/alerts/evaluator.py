"""Evaluates every alert rule on schedule: a thread next to the rollout controller, in the process
that loads traces (the lone worker, or the `serve` supervisor of several).

Each rule is evaluated every `evaluate_every_s`: its condition is read from the store, the state
machine (lockgate.alerts.state) decides the transition, and the transition is written with
compare-and-set. Whoever wins that write, and only they, then records it in the audit log, runs
the rule's actions and sends its notices. So however many ticks, restarts and replicas see an alert
firing, it fires once, and resolves once. The cost: an evaluator that dies between the write and
its actions loses those actions (at most once, never twice).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from lockgate.alerts import actions, measure
from lockgate.alerts.judge import Condition
from lockgate.alerts.state import FIRING, NO_DATA, PENDING, Notice, Transition, next_state
from lockgate.alerts.webhook import Notice as WebhookNotice
from lockgate.alerts.webhook import WebhookSender
from lockgate.config import LockgateConfig
from lockgate.config.alerts import BurnRateRule, ThresholdRule
from lockgate.observe import metrics
from lockgate.observe.windows import LiveWindows
from lockgate.store import AlertStateRecord, Store, StoreUnavailable

log = logging.getLogger(__name__)

Rule = ThresholdRule | BurnRateRule
CAS_ATTEMPTS = 20
STATE_GAUGE = {"ok": 0, PENDING: 1, FIRING: 2, NO_DATA: -1}
AUDIT_ACTIONS = {Notice.FIRING: "alert.fire", Notice.ESCALATED: "alert.escalate", Notice.RESOLVED: "alert.resolve"}


class AlertEvaluator:
    def __init__(self, store: Store, rules: tuple[Rule, ...], *, sender: WebhookSender | None = None,
                 tick_s: float = 0.25, windows: LiveWindows | None = None) -> None:
        self.store = store
        self.windows = windows  # None: the store's windows
        self.rules = rules
        self.sender = sender or WebhookSender()
        self.tick_s = tick_s
        self._next_due: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- evaluation -----------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> dict[str, Transition]:
        """Evaluates the rules that are due; returns the transitions this evaluator wrote."""
        now = time.time() if now is None else now
        written: dict[str, Transition] = {}
        for rule in self.rules:
            if now < self._next_due.get(rule.name, 0.0):
                continue
            self._next_due[rule.name] = now + rule.evaluate_every_s
            try:
                transition = self.evaluate(rule, now)
            except StoreUnavailable:
                raise  # every rule would fail alike: the loop logs it once and retries next tick
            except Exception:  # noqa: BLE001 - one broken rule must not silence the others
                log.exception("alert %s: evaluation failed", rule.name)
                metrics.ALERT_EVALUATION_ERRORS.labels(alert=rule.name).inc()
                continue
            if transition is not None:
                written[rule.name] = transition
        return written

    def evaluate(self, rule: Rule, now: float) -> Transition | None:
        condition = measure.evaluate(self.store, rule, now, windows=self.windows)
        transition, previous = self._write(rule, condition, now)
        state = transition.record.state if transition else (previous.state if previous else "ok")
        metrics.ALERT_STATE.labels(alert=rule.name, route=rule.route).set(STATE_GAUGE.get(state, 0))
        if transition is not None and transition.notice is not None:
            metrics.ALERT_NOTICES.labels(alert=rule.name, notice=transition.notice.value).inc()
            self._announce(rule, transition, previous, condition, now)
        return transition

    def _write(self, rule: Rule, condition: Condition, now: float) -> tuple[Transition | None, AlertStateRecord | None]:
        for _ in range(CAS_ATTEMPTS):
            current = self.store.get_alert_state(rule.name)
            transition = next_state(current, condition, rule, now)
            if transition is None:
                return None, current
            if self.store.put_alert_state(transition.record, current.revision if current else 0):
                return transition, current
        log.warning("alert %s: its state kept changing under this evaluator; trying again next time", rule.name)
        return None, None

    # -- what a transition sets off -------------------------------------------------------------

    def _announce(self, rule: Rule, transition: Transition, previous: AlertStateRecord | None,
                  condition: Condition, now: float) -> None:
        record, notice = transition.record, transition.notice
        assert notice is not None
        details = record.details
        # A firing opens its incident below; an escalation or a resolve belongs to the firing's incident.
        incident = None if notice is Notice.FIRING or previous is None else previous.details.get("incident")
        self.store.append_audit(actions.actor_of(rule), AUDIT_ACTIONS[notice], rule.route, {
            "alert": rule.name, "kind": rule.kind, "severity": details.get("severity"), "value": condition.value,
            "threshold": condition.threshold, "summary": condition.summary, "fingerprint": record.fingerprint,
            "started_at": details.get("fired_at") if notice is Notice.RESOLVED else record.firing_since,
            "incident": incident,
        })
        results: list[actions.ActionResult] = []
        if notice is Notice.FIRING:
            results = actions.run_on_fire(self.store, rule, severity=details["severity"], summary=condition.summary)
            incident = next((r.incident for r in results if r.incident), None)
        elif notice is Notice.RESOLVED:
            mitigated = actions.mitigate_incident(self.store, rule, incident, condition.summary)
            results = [mitigated] if mitigated is not None else []
        results += self._notify(rule, record, notice, condition, incident, results, now)
        if notice is Notice.FIRING:
            self._remember(rule, record, {"incident": incident, "actions": [r.as_dict() for r in results]})
        if results:
            self.store.append_audit(actions.actor_of(rule), "alert.actions", rule.route, {
                "alert": rule.name, "notice": notice.value, "actions": [r.as_dict() for r in results]})

    def _notify(self, rule: Rule, record: AlertStateRecord, notice: Notice, condition: Condition,
                incident: str | None, results: list[actions.ActionResult], now: float) -> list[actions.ActionResult]:
        hooks = [a.webhook for a in rule.actions if a.webhook is not None]
        payload = notice_payload(rule, record, notice, condition, incident, results, now)
        queued = []
        for hook in hooks:
            accepted = self.sender.send(WebhookNotice(rule.name, hook, payload))
            queued.append(actions.ActionResult("webhook", "done" if accepted else "failed",
                                               f"{'queued for' if accepted else 'dropped, queue full:'} {hook.url}"))
        return queued

    def _remember(self, rule: Rule, fired: AlertStateRecord, extra: dict[str, Any]) -> None:
        """Keeps the firing's incident and action results in its state, for the resolve notice."""
        for _ in range(CAS_ATTEMPTS):
            current = self.store.get_alert_state(rule.name)
            if current is None or current.state != FIRING or current.firing_since != fired.firing_since:
                return  # resolved (or re-fired) meanwhile: the record it would annotate is gone
            if self.store.put_alert_state(replace(current, details={**current.details, **extra}), current.revision):
                return

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lockgate-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sender.stop()

    def _run(self) -> None:
        healthy = True
        while not self._stop.wait(self.tick_s):
            try:
                self.tick(time.time())
                healthy = True
            except StoreUnavailable as exc:
                if healthy:
                    log.warning("alerts not evaluated (store unavailable: %s); retrying", exc)
                healthy = False
            except Exception:  # noqa: BLE001 - the evaluator must outlive any one bad tick
                log.exception("alert evaluator tick failed")


def notice_payload(rule: Rule, record: AlertStateRecord, notice: Notice, condition: Condition, incident: str | None,
                   results: list[actions.ActionResult], now: float) -> dict[str, Any]:
    """The JSON a webhook receives (docs/alerts.md lists the fields)."""
    details = record.details
    resolved = notice is Notice.RESOLVED
    payload: dict[str, Any] = {
        "alert": rule.name, "route": rule.route, "kind": rule.kind,
        "state": "resolved" if resolved else "firing", "notice": notice.value,
        "severity": details.get("severity"), "summary": condition.summary,
        "value": condition.value, "threshold": condition.threshold,
        "started_at": details.get("fired_at") if resolved else record.firing_since,
        "resolved_at": now if resolved else None,
        "fingerprint": record.fingerprint, "incident": incident, "runbook": rule.runbook, "sent_at": time.time(),
        "actions": [r.as_dict() for r in results],
    }
    if isinstance(rule, ThresholdRule):
        payload.update(metric=rule.metric, window_s=rule.window_s)
    else:
        payload.update(metric=rule.slo.metric, slo=condition.details.get("slo"),
                       windows=condition.details.get("windows"))
    if notice is Notice.ESCALATED:
        payload["escalated_from"] = details.get("escalated_from")
    return payload


def build_alert_evaluator(store: Store, config: LockgateConfig, *,
                          windows: LiveWindows | None = None) -> AlertEvaluator | None:
    """The evaluator for the configuration's rules, or None when it declares none."""
    return AlertEvaluator(store, config.alerts, windows=windows) if config.alerts else None
