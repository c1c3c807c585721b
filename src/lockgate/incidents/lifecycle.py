"""Incidents: opened by an alert's action or by a person, acknowledged, mitigated, resolved.

    open --(mitigate: the alert that opened it resolved, or `lockgate incident mitigate`)--> mitigated
    open | mitigated --(resolve)--> resolved

Acknowledging is orthogonal to the status: it records that a person responded, and is what the
severity's response-time target measures. Resolving an incident nobody acknowledged counts as the
response. Each change is written with the values it expects to replace, and recorded in the audit
log in the same transaction, so two people (or an alert and a person) cannot both make it.
"""

from __future__ import annotations

import re
import time

from lockgate.config.alerts import SEVERITIES
from lockgate.store import IncidentRecord, Store

# How soon a person must acknowledge an incident, by severity.
RESPONSE_TARGETS_S = {"critical": 15 * 60, "high": 60 * 60, "medium": 4 * 3600, "low": 24 * 3600}
# How far before its opening an incident's timeline starts, when nothing says otherwise.
DEFAULT_LOOKBACK_S = 3600.0

_REF = re.compile(r"^(?:inc-?)?(\d+)$", re.IGNORECASE)


class IncidentError(Exception):
    """A request that cannot apply to the incident as it is; the message says why."""


def parse_ref(text: str) -> int:
    """`INC-12`, `inc-12` or `12` -> 12."""
    match = _REF.match(text.strip())
    if match is None:
        raise IncidentError(f"{text!r} is not an incident id; use the number `lockgate incident list` shows "
                            "(e.g. INC-3 or 3)")
    return int(match.group(1))


def get(store: Store, incident_id: int) -> IncidentRecord:
    incident = store.get_incident(incident_id)
    if incident is None:
        raise IncidentError(f"no incident INC-{incident_id}; see `lockgate incident list`")
    return incident


def open_incident(store: Store, *, title: str, severity: str, opened_by: str, route: str | None = None,
                  alert: str | None = None, summary: str | None = None,
                  lookback_s: float = DEFAULT_LOOKBACK_S) -> IncidentRecord:
    if severity not in SEVERITIES:
        raise IncidentError(f"unknown severity {severity!r}; use one of: {', '.join(SEVERITIES)}")
    if not title.strip():
        raise IncidentError("an incident needs a title: --title 'what is wrong'")
    return store.open_incident(title=title.strip(), severity=severity, route=route, opened_by=opened_by,
                               response_due_at=time.time() + RESPONSE_TARGETS_S[severity], lookback_s=lookback_s,
                               alert=alert, summary=summary)


def open_for_alert(store: Store, alert: str) -> IncidentRecord | None:
    """The incident this alert opened that is not resolved yet, if any: a re-firing joins it."""
    for status in ("open", "mitigated"):
        for incident in store.list_incidents(status=status, limit=1000):
            if incident.alert == alert:
                return incident
    return None


def acknowledge(store: Store, incident_id: int, *, actor: str) -> IncidentRecord:
    incident = get(store, incident_id)
    if incident.acknowledged_at is not None:
        raise IncidentError(f"{incident.ref} was acknowledged by {incident.acknowledged_by} already")
    if incident.status == "resolved":
        raise IncidentError(f"{incident.ref} is resolved; there is nothing left to acknowledge")
    now = time.time()
    return _change(store, incident, {"acknowledged_at": now, "acknowledged_by": actor},
                   {"acknowledged_at": None, "status": incident.status}, actor, "incident.ack",
                   {"response_s": now - incident.opened_at, "target_s": RESPONSE_TARGETS_S[incident.severity]})


def mitigate(store: Store, incident_id: int, *, actor: str, note: str = "") -> IncidentRecord:
    incident = get(store, incident_id)
    if incident.status != "open":
        raise IncidentError(f"{incident.ref} is {incident.status}; only an open incident can be mitigated")
    return _change(store, incident, {"status": "mitigated", "mitigated_at": time.time()}, {"status": "open"},
                   actor, "incident.mitigate", {"note": note})


def resolve(store: Store, incident_id: int, *, actor: str, note: str = "") -> IncidentRecord:
    incident = get(store, incident_id)
    if incident.status == "resolved":
        raise IncidentError(f"{incident.ref} was resolved by {incident.resolved_by} already")
    now = time.time()
    changes: dict[str, object] = {"status": "resolved", "resolved_at": now, "resolved_by": actor}
    if incident.mitigated_at is None:
        changes["mitigated_at"] = now
    if incident.acknowledged_at is None:
        changes.update(acknowledged_at=now, acknowledged_by=actor)
    return _change(store, incident, changes, {"status": incident.status}, actor, "incident.resolve",
                   {"note": note, "duration_s": now - incident.opened_at})


def _change(store: Store, incident: IncidentRecord, changes: dict[str, object], expected: dict[str, object],
            actor: str, action: str, details: dict[str, object]) -> IncidentRecord:
    updated = store.update_incident(incident.incident_id, changes, expected=expected, actor=actor, action=action,
                                    details=details)
    if updated is None:
        raise IncidentError(f"{incident.ref} changed while this command ran; look at it again "
                            f"(`lockgate incident show {incident.incident_id}`) and retry")
    return updated


def response_status(incident: IncidentRecord, now: float) -> str:
    """Where the incident stands against its severity's response-time target, in words."""
    target = RESPONSE_TARGETS_S[incident.severity]
    if incident.acknowledged_at is not None:
        took = incident.acknowledged_at - incident.opened_at
        verdict = "met" if took <= target else "missed"
        return f"acknowledged after {duration_words(took)} (target {duration_words(target)}: {verdict})"
    if now <= incident.response_due_at:
        return f"not acknowledged; due within {duration_words(incident.response_due_at - now)}"
    return f"OVERDUE: not acknowledged {duration_words(now - incident.response_due_at)} past its target"


def duration_words(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
