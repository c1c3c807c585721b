"""An incident's timeline: what the audit log and the traces say happened around it.

The window runs from `lookback_s` before the incident opened (an alert's incident looks back over
its rule's longest window, to show what led to it) until a minute after it was resolved (what
followed the resolution: an alert's resolve, a promotion), or now. In it:

  - every audit record about the incident's route (rollout steps, rollbacks and promotions, flags
    and the kill switch, alert firings and resolves, releases of the route) or about the whole
    gateway (configuration loads, API keys, retention), and this incident's own records;
  - from the traces, requests and failures per minute per release, and entries for the first and
    the last minute with failures of each release.

An incident without a route shows every audit record in its window and no trace statistics.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from lockgate.audit.chain import AuditRecord
from lockgate.store import IncidentRecord, Store

# Records about the whole gateway: they can explain an incident on any route.
GLOBAL_ACTIONS = frozenset({"config.load", "key.create", "key.revoke", "trace.retention"})
MAX_BUCKETS = 600
AFTER_RESOLVED_S = 60.0
_INCIDENT_VERBS = {"incident.ack": "acknowledged", "incident.mitigate": "mitigated", "incident.resolve": "resolved"}


@dataclass(frozen=True)
class Entry:
    ts: float
    source: str  # "audit" or "traces"
    action: str  # the audit action, or traces.errors_began / traces.errors_last
    actor: str | None
    text: str
    seq: int | None = None  # the audit record's


@dataclass(frozen=True)
class Bucket:
    start: float
    seconds: float
    release: str
    requests: int
    failed: int


@dataclass(frozen=True)
class Timeline:
    incident: IncidentRecord
    since: float
    until: float
    entries: tuple[Entry, ...]
    buckets: tuple[Bucket, ...]  # only those with traffic
    bucket_s: float

    @property
    def bucket_words(self) -> str:
        """The width of a row in words: a minute, or several when the window is long."""
        return bucket_words(self.bucket_s)

    def totals(self) -> dict[str, tuple[int, int]]:
        """(requests, failed) per release over the whole window."""
        totals: dict[str, tuple[int, int]] = {}
        for b in self.buckets:
            n, bad = totals.get(b.release, (0, 0))
            totals[b.release] = (n + b.requests, bad + b.failed)
        return totals

    def as_json(self) -> dict[str, Any]:
        return {"incident": asdict(self.incident) | {"ref": self.incident.ref}, "since": self.since,
                "until": self.until, "bucket_s": self.bucket_s, "entries": [asdict(e) for e in self.entries],
                "buckets": [asdict(b) for b in self.buckets],
                "totals": {r: {"requests": n, "failed": bad} for r, (n, bad) in self.totals().items()}}


def build(store: Store, incident: IncidentRecord, now: float | None = None) -> Timeline:
    now = time.time() if now is None else now
    since = incident.opened_at - incident.lookback_s
    until = min(now, incident.resolved_at + AFTER_RESOLVED_S) if incident.resolved_at is not None else now
    # The incident's own records are in whatever the window: its resolve is written just after resolved_at.
    entries = [audit_entry(r) for r in store.list_audit()
               if relevant(r, incident) and (since <= r.ts <= until or r.target == incident.ref)]
    buckets: list[Bucket] = []
    bucket_s = bucket_size(until - since)
    if incident.route is not None:
        buckets = failures_per_bucket(store, incident.route, since, until, bucket_s)
        entries += failure_entries(buckets)
    entries.sort(key=lambda e: (e.ts, e.source != "audit", e.seq or 0))
    return Timeline(incident, since, until, tuple(entries), tuple(buckets), bucket_s)


def relevant(record: AuditRecord, incident: IncidentRecord) -> bool:
    if record.action.startswith("incident."):
        return record.target == incident.ref
    if incident.route is None or record.action in GLOBAL_ACTIONS:
        return True
    route = incident.route
    return (record.target == route or record.target.startswith(route + "@")
            or record.details.get("route") == route)


def bucket_size(span_s: float) -> float:
    """A minute, or as many minutes as keep the table under MAX_BUCKETS rows."""
    return 60.0 * max(1, math.ceil(span_s / 60.0 / MAX_BUCKETS))


def bucket_words(seconds: float) -> str:
    return "minute" if seconds == 60 else f"{seconds / 60:g} minutes"


def failures_per_bucket(store: Store, route: str, since: float, until: float, bucket_s: float) -> list[Bucket]:
    buckets = []
    start = math.floor(since / bucket_s) * bucket_s  # aligned, so rows read as clock minutes
    while start < until:
        for w in store.release_window(route, start, start + bucket_s, with_latencies=False):
            if not w.shadow and w.requests:
                buckets.append(Bucket(start, bucket_s, w.release, w.requests, w.failed))
        start += bucket_s
    return buckets


def failure_entries(buckets: list[Bucket]) -> list[Entry]:
    """The first and the last bucket with failed requests, per release."""
    failing: dict[str, list[Bucket]] = {}
    for b in buckets:
        if b.failed:
            failing.setdefault(b.release, []).append(b)
    entries = []
    for release, rows in failing.items():
        first, last = rows[0], rows[-1]
        span = bucket_words(first.seconds)
        entries.append(Entry(first.start, "traces", "traces.errors_began", None,
                             f"first {span} with failed requests on {release}: {first.failed} of {first.requests}"))
        if last is not first:
            entries.append(Entry(last.start, "traces", "traces.errors_last", None,
                                 f"last {span} with failed requests on {release}: {last.failed} of {last.requests}"))
    return entries


def audit_entry(record: AuditRecord) -> Entry:
    return Entry(record.ts, "audit", record.action, record.actor, describe(record), record.seq)


def describe(record: AuditRecord) -> str:
    """One line for people; the audit log itself keeps every detail."""
    d, action, target = record.details, record.action, record.target
    if action.startswith("alert."):
        what = {"alert.fire": "fired", "alert.escalate": "escalated", "alert.resolve": "resolved",
                "alert.actions": "ran its actions"}.get(action, action)
        tail = d.get("summary") if action != "alert.actions" else "; ".join(
            f"{a.get('kind')}: {a.get('note')}" for a in d.get("actions", []))
        severity = f" ({d['severity']})" if d.get("severity") and action != "alert.actions" else ""
        return f"alert {d.get('alert')} {what}{severity}: {tail}"
    if action == "incident.open":
        return f"{target} opened ({d.get('severity')}) by {record.actor}: {d.get('title')}"
    if action in _INCIDENT_VERBS:
        note = f": {d['note']}" if d.get("note") else ""
        return f"{target} {_INCIDENT_VERBS[action]} by {record.actor}{note}"
    if d.get("reason"):
        return f"{action} on {target}: {d['reason']}"
    if action == "release.create":
        return f"release {target} registered (label {d.get('label')})"
    if action == "config.load":
        return f"configuration loaded from {target} (content {str(d.get('content_hash'))[:12]})"
    if action in ("key.create", "key.revoke"):
        return f"API key {d.get('name')} ({target}) {'created' if action == 'key.create' else 'revoked'}"
    if action == "trace.retention":
        return f"retention deleted {d.get('deleted')} trace(s)"
    return f"{action} on {target}"
