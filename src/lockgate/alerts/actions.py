"""What a firing alert does, beyond telling people: roll back, flip the kill switch, open an incident.

They run in that order whatever order the rule lists them in (stop the damage first, then record
it), each on its own: one failing does not keep the others from running. Each ends in an
ActionResult (done, skipped or failed, with a note) that is kept in the alert's state and its
`alert.actions` audit record: a rollback with no rollout in progress is skipped, and says so.
Webhooks are notices, sent last, so they can carry the incident's id (lockgate.alerts.notices).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lockgate.config.alerts import BurnRateRule, IncidentAction, KillSwitchAction, ThresholdRule
from lockgate.control.commands import apply, set_kill_switch, state_of
from lockgate.incidents import lifecycle
from lockgate.observe import metrics
from lockgate.rollout.machine import RolloutError
from lockgate.store import Store

log = logging.getLogger(__name__)

Rule = ThresholdRule | BurnRateRule
ORDER = ("rollback", "kill_switch", "incident")


@dataclass(frozen=True)
class ActionResult:
    kind: str
    outcome: str  # "done", "skipped" or "failed"
    note: str
    incident: str | None = None  # the incident's ref, for the incident action

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def actor_of(rule: Rule) -> str:
    return f"alert:{rule.name}"


def run_on_fire(store: Store, rule: Rule, *, severity: str, summary: str) -> list[ActionResult]:
    """Runs the rule's rollback, kill switch and incident actions, in that order."""
    reason = f"alert {rule.name} ({severity}): {summary}"
    handlers: dict[str, Callable[[Any], ActionResult]] = {
        "rollback": lambda _: _rollback(store, rule, reason),
        "kill_switch": lambda spec: _kill_switch(store, rule, spec, reason),
        "incident": lambda spec: _incident(store, rule, spec, severity, summary),
    }
    results = []
    for kind in ORDER:
        for action in (a for a in rule.actions if a.kind == kind):
            try:
                results.append(handlers[kind](getattr(action, kind)))
            except Exception as exc:  # noqa: BLE001 - one failed action must not stop the next
                log.exception("alert %s: %s action failed", rule.name, kind)
                metrics.ALERT_EVALUATION_ERRORS.labels(alert=rule.name).inc()
                results.append(ActionResult(kind, "failed", f"{type(exc).__name__}: {exc}"))
    return results


def _rollback(store: Store, rule: Rule, reason: str) -> ActionResult:
    try:
        rollout = state_of(store, rule.route).active_rollout()
        if rollout is None:
            return ActionResult("rollback", "skipped", f"no rollout in progress on {rule.route}")
        apply(store, rule.route, "rollback", actor=actor_of(rule), reason=reason)
    except RolloutError as exc:  # no state yet, or the rollout ended in between: nothing to roll back
        return ActionResult("rollback", "skipped", str(exc))
    return ActionResult("rollback", "done", f"rolled back {rule.route}@{rollout.candidate} ({rollout.id}); "
                                            f"{rule.route}@{rollout.stable} serves everyone")


def _kill_switch(store: Store, rule: Rule, spec: KillSwitchAction, reason: str) -> ActionResult:
    try:
        state = set_kill_switch(store, rule.route, spec.mode, actor=actor_of(rule), message=spec.message,
                                reason=reason)
    except RolloutError as exc:
        return ActionResult("kill_switch", "failed", str(exc))
    serving = f"{rule.route}@{state.last_good or state.stable}" if spec.mode == "last_good" else "a static answer"
    return ActionResult("kill_switch", "done", f"kill switch {spec.mode}: {rule.route} now serves {serving}")


def _incident(store: Store, rule: Rule, spec: IncidentAction, severity: str, summary: str) -> ActionResult:
    existing = lifecycle.open_for_alert(store, rule.name)
    if existing is not None:
        return ActionResult("incident", "skipped", f"{existing.ref} is still {existing.status}; this firing joins it",
                            incident=existing.ref)
    incident = lifecycle.open_incident(
        store, title=spec.title or f"{rule.name} fired on {rule.route}", severity=spec.severity or severity,
        opened_by=actor_of(rule), route=rule.route, alert=rule.name, summary=summary,
        lookback_s=max(lifecycle.DEFAULT_LOOKBACK_S, rule.longest_window_s))
    return ActionResult("incident", "done", f"opened {incident.ref} ({incident.severity})", incident=incident.ref)


def mitigate_incident(store: Store, rule: Rule, incident_ref: str | None, summary: str) -> ActionResult | None:
    """When the alert resolves, the incident it opened is mitigated (a person still resolves it)."""
    if incident_ref is None:
        return None
    try:
        incident = lifecycle.get(store, lifecycle.parse_ref(incident_ref))
        if incident.status != "open":
            return ActionResult("incident", "skipped", f"{incident.ref} is {incident.status}", incident=incident.ref)
        lifecycle.mitigate(store, incident.incident_id, actor=actor_of(rule), note=f"alert resolved: {summary}")
    except lifecycle.IncidentError as exc:
        return ActionResult("incident", "skipped", str(exc), incident=incident_ref)
    return ActionResult("incident", "done", f"{incident_ref} mitigated", incident=incident_ref)
