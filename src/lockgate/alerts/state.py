"""An alert's life, as a pure function from (stored state, condition now, time) to the next state.

    ok | no_data --(firing, for_s = 0)--> firing                       notice: firing
    ok | no_data --(firing, for_s > 0)--> pending --(still firing for for_s)--> firing
    pending --(ok)--> ok        pending --(no data)--> no_data
    firing --(ok)--> ok                                                notice: resolved
    firing --(firing at a more severe level)--> firing                 notice: firing again (escalated)
    firing --(no data)--> firing      (recovery it cannot see is not claimed: it waits for data)
    ok --(no data)--> no_data --(ok)--> ok                             no notice

Only transitions are written, and each is written with compare-and-set: of several evaluators (or
replicas) that see the same change, one writes it and only that one notifies. That is the
de-duplication: a firing alert is notified once however many ticks and processes see it firing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from lockgate.alerts.judge import Condition, Status
from lockgate.config.alerts import SEVERITIES, BurnRateRule, ThresholdRule
from lockgate.store import AlertStateRecord

OK, PENDING, FIRING, NO_DATA = "ok", "pending", "firing", "no_data"
# What a resolved firing leaves in the state's details, kept through quiet states until the next firing.
LAST_FIRING = ("fired_at", "resolved_at", "incident", "actions")


class Notice(StrEnum):
    FIRING = "firing"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Transition:
    record: AlertStateRecord  # to store (its revision is the one it replaces)
    notice: Notice | None


def fingerprint(rule: ThresholdRule | BurnRateRule) -> str:
    """The rule's identity for receivers: a resolve carries the fingerprint of the firing it ends."""
    return hashlib.sha256(f"{rule.name}\0{rule.route}".encode()).hexdigest()[:16]


def initial(rule: ThresholdRule | BurnRateRule) -> AlertStateRecord:
    return AlertStateRecord(alert=rule.name, state=OK, fingerprint=fingerprint(rule))


def next_state(current: AlertStateRecord | None, condition: Condition, rule: ThresholdRule | BurnRateRule,
               now: float) -> Transition | None:
    """The transition the condition causes, or None when the stored state stands."""
    state = current or initial(rule)
    reading: dict[str, Any] = {"value": condition.value, "threshold": condition.threshold, "summary": condition.summary,
               "condition": condition.details, "evaluated_at": now}
    if condition.status is Status.FIRING:
        severity = condition.severity or "high"
        if state.state == FIRING:
            previous = state.details.get("severity", severity)
            if SEVERITIES.index(severity) < SEVERITIES.index(previous):
                details = {**state.details, **reading, "severity": severity, "escalated_from": previous}
                return Transition(replace(state, details=details, last_notified=now), Notice.ESCALATED)
            return None
        if state.state == PENDING:
            if now - state.details.get("pending_since", now) < rule.for_s:
                return None
        elif rule.for_s > 0:
            details = {**_quiet(state, reading), "severity": severity, "pending_since": now}
            return Transition(replace(state, state=PENDING, details=details), None)
        details = {**reading, "severity": severity}
        return Transition(replace(state, state=FIRING, firing_since=now, last_notified=now, details=details),
                          Notice.FIRING)
    if condition.status is Status.OK:
        if state.state == FIRING:
            details = {**reading, "severity": state.details.get("severity"), "fired_at": state.firing_since,
                       "resolved_at": now, "incident": state.details.get("incident"),
                       "actions": state.details.get("actions")}
            return Transition(replace(state, state=OK, firing_since=None, last_notified=now, details=details),
                              Notice.RESOLVED)
        if state.state == OK and current is not None:
            return None
        return Transition(replace(state, state=OK, details=_quiet(state, reading)), None)
    # No data: a firing alert keeps firing; anything else says plainly that it cannot tell.
    if state.state in (FIRING, NO_DATA):
        return None
    return Transition(replace(state, state=NO_DATA, details=_quiet(state, reading)), None)


def _quiet(state: AlertStateRecord, reading: dict[str, Any]) -> dict[str, Any]:
    """Details of a state that is not firing: the reading, and what the last firing was (kept until the next)."""
    last = {key: state.details[key] for key in LAST_FIRING if key in state.details}
    return {**last, **reading, "severity": None}
