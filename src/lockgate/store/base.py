"""The store interface. SQLite is the default; PostgreSQL joins behind the same methods.

Nothing on the request path calls the store directly: keys are read into memory and refreshed,
traces go through the on-disk journal first. That is what keeps serving alive when the database
is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from lockgate.audit.chain import AuditRecord


class StoreUnavailable(Exception):
    """The database cannot be reached or written right now; the caller should retry later."""


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    name: str
    key_hash: str
    routes: tuple[str, ...] | None  # None: every route
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: float
    revoked_at: float | None = None
    role: str = "app"  # a lockgate.auth.roles.Role value: "app" for the data plane, else a governance role


@dataclass(frozen=True)
class ReleaseRecord:
    route: str
    version: int
    label: str
    content_hash: str
    content: dict[str, Any]
    created_at: float

    @property
    def release_id(self) -> str:
        return f"{self.route}@{self.version}"


@dataclass(frozen=True)
class EvidenceRecord:
    """What a release was judged on: an eval run, a red-team run. Kept so a promotion can cite it."""

    evidence_id: int
    route: str
    version: int
    kind: str  # "eval" or "redteam"
    passed: bool | None  # the gate's verdict; None where a run has no verdict
    summary: dict[str, Any]
    created_at: float

    @property
    def release_id(self) -> str:
        return f"{self.route}@{self.version}"


@dataclass(frozen=True)
class ReleaseWindow:
    """One release's traffic in a time window, as live analysis needs it."""

    release: str  # "route@version"
    shadow: bool  # shadow copies (answers never returned) are counted apart from served traffic
    requests: int
    failed: int
    guard_violations: int
    grounding_failures: int
    latencies_ms: tuple[float, ...]  # sorted, successful requests only
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChainHead:
    """The last link a chain's writer wrote, kept apart from the chain so a cut tail shows."""

    seq: int
    hash: str


@dataclass(frozen=True)
class TraceLink:
    """One link of the trace chain, with what is left of its trace."""

    seq: int
    trace_id: str
    ts: float
    route: str | None
    body_sha256: str
    prev_hash: str
    hash: str
    expired_by: int | None  # the audit seq of the retention run that deleted the body
    body: str | None = None  # the stored JSON; None when the trace row is gone (or not asked for)
    columns: dict[str, Any] | None = None  # the trace row's indexed columns, derived from the body


@dataclass(frozen=True)
class RetentionCutoffs:
    """Traces older than these times (epoch seconds) are deleted: per configured route, and one for
    every other route (routes since removed from the configuration, unknown models). None keeps."""

    by_route: dict[str, float | None] = field(default_factory=dict)
    other_routes: float | None = None

    def cutoff_for(self, route: str | None) -> float | None:
        return self.by_route[route] if route is not None and route in self.by_route else self.other_routes

    def deletes_anything(self) -> bool:
        return self.other_routes is not None or any(c is not None for c in self.by_route.values())

    def as_details(self) -> dict[str, Any]:
        return {"cutoffs": dict(self.by_route), "other_routes_cutoff": self.other_routes}

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> RetentionCutoffs:
        return cls(dict(details.get("cutoffs") or {}), details.get("other_routes_cutoff"))


@dataclass(frozen=True)
class FeedbackRecord:
    """A user's rating of one request (see lockgate.feedback). `status` is `pending` until the request's
    trace is in the store, then `linked` (route and release filled from the trace) or `key_mismatch`
    (rated with another API key than the request's: kept, never counted)."""

    feedback_id: str
    request_id: str
    ts: float
    rating: str  # as sent: "up", "down", "1" .. "5"
    score: float  # normalised to [0, 1]
    comment: str | None
    user: str | None  # pseudonymised
    key_id: str | None
    rater: str
    status: str
    route: str | None = None
    release: str | None = None
    linked_at: float | None = None


@dataclass(frozen=True)
class FeedbackSummary:
    """Linked feedback for one release, one rating per request and rater (the latest)."""

    route: str
    release: str
    count: int
    mean_score: float
    negative: int  # thumbs down, 1 or 2 stars

    @property
    def negative_rate(self) -> float:
        return self.negative / self.count if self.count else 0.0


@dataclass(frozen=True)
class AlertStateRecord:
    """One alert rule's state as every evaluator shares it (lockgate.alerts.state), written with
    compare-and-set on `revision`, so each transition, and its notice, happens once across replicas."""

    alert: str
    state: str  # "ok", "pending", "firing" or "no_data"
    fingerprint: str  # the rule's identity; a notice's receiver pairs a resolve with its firing by it
    firing_since: float | None = None
    last_notified: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # last value, severity, incident, action results...
    revision: int = 0  # 0: never stored
    updated_at: float = 0.0


INCIDENT_STATUSES = ("open", "mitigated", "resolved")


@dataclass(frozen=True)
class IncidentRecord:
    incident_id: int
    title: str
    severity: str  # critical, high, medium, low
    status: str  # open, mitigated, resolved
    route: str | None
    opened_at: float
    opened_by: str  # a person, or "alert:<name>"
    response_due_at: float  # acknowledge by then (lockgate.incidents.severity)
    lookback_s: float  # the timeline starts this long before the incident opened
    alert: str | None = None  # the alert rule that opened it
    summary: str | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    mitigated_at: float | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None

    @property
    def ref(self) -> str:
        return f"INC-{self.incident_id}"


class Store(Protocol):
    def migrate(self) -> None: ...

    # API keys
    def add_key(self, record: ApiKeyRecord) -> None: ...
    def list_keys(self, include_revoked: bool = False) -> list[ApiKeyRecord]: ...
    def revoke_key(self, key_id_or_name: str, at: float) -> bool: ...

    # Release registry: the same content always gets the same version.
    def register_release(self, route: str, label: str, content_hash: str, content: dict[str, Any]) -> ReleaseRecord: ...
    def list_releases(self, route: str | None = None) -> list[ReleaseRecord]: ...
    def get_release(self, route: str, version: int) -> ReleaseRecord | None: ...

    # Evidence: eval and red-team results per release, oldest first.
    def add_evidence(
        self, route: str, version: int, kind: str, passed: bool | None, summary: dict[str, Any]
    ) -> EvidenceRecord: ...
    def list_evidence(
        self, route: str, version: int | None = None, kind: str | None = None
    ) -> list[EvidenceRecord]: ...

    # Audit log: append-only, hash-chained (see lockgate.audit.chain).
    def append_audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord: ...
    def list_audit(
        self, since_seq: int = 0, limit: int | None = None, action: str | None = None
    ) -> list[AuditRecord]: ...
    def chain_head(self, chain: str) -> ChainHead | None: ...

    # Traces: idempotent on trace id, so a journal segment can be replayed safely. Each newly
    # stored trace is linked into the trace chain in the same transaction.

    def insert_traces(self, traces: list[dict[str, Any]]) -> int: ...
    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]: ...
    def get_trace(self, trace_id: str) -> dict[str, Any] | None: ...
    def count_traces(self) -> int: ...
    def release_window(
        self, route: str, since: float, until: float | None = None, *, with_latencies: bool = True
    ) -> list[ReleaseWindow]: ...
    # A route's traces with since <= ts < until, at most `limit`: the oldest first (checks that walk
    # a window), or the newest (drift windows keep the latest traffic).
    def traces_between(
        self, route: str, since: float, until: float | None = None, *, limit: int = 1000, newest_first: bool = False
    ) -> list[dict[str, Any]]: ...

    # Route state: what serves each route now (stable, rollout, kill switch). Compare-and-set.
    def get_route_state(self, route: str) -> tuple[int, dict[str, Any]] | None: ...
    def list_route_states(self) -> dict[str, tuple[int, dict[str, Any]]]: ...
    def put_route_state(self, route: str, body: dict[str, Any], expected_revision: int) -> bool: ...

    # The trace chain, for verification: links in seq order, and traces that have no link.
    def iter_trace_links(self, *, with_bodies: bool = True) -> Iterator[TraceLink]: ...
    def unchained_traces(self, limit: int = 10) -> tuple[int, list[str]]: ...

    # Retention: deletes the traces older than the cutoffs and records the run in the audit log
    # ("trace.retention"), in one transaction; None when nothing was old enough.
    def expire_traces(self, cutoffs: RetentionCutoffs, *, actor: str) -> AuditRecord | None: ...

    # Feedback: idempotent on feedback id; linked to its trace by `link_feedback` once both are stored.
    def insert_feedback(self, records: list[dict[str, Any]]) -> int: ...
    def link_feedback(self) -> list[FeedbackRecord]: ...
    def list_feedback(
        self, *, request_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[FeedbackRecord]: ...
    def feedback_summary(self, route: str, since: float | None = None) -> list[FeedbackSummary]: ...

    # Alert states: one row per rule, compare-and-set on its revision (0: not stored yet).
    def get_alert_state(self, alert: str) -> AlertStateRecord | None: ...
    def list_alert_states(self) -> list[AlertStateRecord]: ...
    def put_alert_state(self, record: AlertStateRecord, expected_revision: int) -> bool: ...

    # Incidents: each change is recorded in the audit log in the same transaction. `update_incident`
    # writes only while the incident still has the `expected` values (None: unset), else returns None.
    def open_incident(
        self, *, title: str, severity: str, route: str | None, opened_by: str, response_due_at: float,
        lookback_s: float, alert: str | None = None, summary: str | None = None,
    ) -> IncidentRecord: ...
    def get_incident(self, incident_id: int) -> IncidentRecord | None: ...
    def list_incidents(self, status: str | None = None, limit: int = 100) -> list[IncidentRecord]: ...
    def update_incident(
        self, incident_id: int, changes: dict[str, Any], *, expected: dict[str, Any], actor: str, action: str,
        details: dict[str, Any],
    ) -> IncidentRecord | None: ...

    def close(self) -> None: ...
