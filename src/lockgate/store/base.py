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
    def list_evidence(self, route: str, version: int | None = None, kind: str | None = None) -> list[EvidenceRecord]: ...

    # Audit log: append-only, hash-chained (see lockgate.audit.chain).
    def append_audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord: ...
    def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[AuditRecord]: ...

    # Traces: idempotent on trace id, so a journal segment can be replayed safely.
    def insert_traces(self, traces: list[dict[str, Any]]) -> int: ...
    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]: ...
    # A route's traces with since <= ts < until, newest first, at most `limit` (drift windows).
    def traces_between(self, route: str, since: float, until: float, limit: int) -> list[dict[str, Any]]: ...
    def get_trace(self, trace_id: str) -> dict[str, Any] | None: ...
    def count_traces(self) -> int: ...

    def close(self) -> None: ...
