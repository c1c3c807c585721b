"""The store interface. SQLite is the default; PostgreSQL joins behind the same methods.

Nothing on the request path calls the store directly: keys are read into memory and refreshed,
traces go through the on-disk journal first. That is what keeps serving alive when the database
is not.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[AuditRecord]: ...

    # Traces: idempotent on trace id, so a journal segment can be replayed safely.
    def insert_traces(self, traces: list[dict[str, Any]]) -> int: ...
    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]: ...
    def get_trace(self, trace_id: str) -> dict[str, Any] | None: ...
    def count_traces(self) -> int: ...

    # Feedback: idempotent on feedback id; linked to its trace by `link_feedback` once both are stored.
    def insert_feedback(self, records: list[dict[str, Any]]) -> int: ...
    def link_feedback(self) -> list[FeedbackRecord]: ...
    def list_feedback(
        self, *, request_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[FeedbackRecord]: ...
    def feedback_summary(self, route: str, since: float | None = None) -> list[FeedbackSummary]: ...

    def close(self) -> None: ...
