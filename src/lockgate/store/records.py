"""Rows to records: how each table's columns read back into the store's dataclasses."""

from __future__ import annotations

import json
from typing import Any

from lockgate.audit.chain import AuditRecord
from lockgate.store.base import (
    AlertStateRecord,
    ApiKeyRecord,
    EvidenceRecord,
    FeedbackRecord,
    IncidentRecord,
    ReleaseRecord,
    TraceLink,
)

# A row reads by column name and by position (sqlite3.Row, engines.PgRow).
Row = Any

TRACE_COLUMNS = ("trace_id", "ts", "route", "release", "key_id", "status", "outcome", "latency_ms")


def api_key(r: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=r["key_id"], name=r["name"], key_hash=r["key_hash"],
        routes=tuple(json.loads(r["routes"])) if r["routes"] is not None else None,
        requests_per_minute=r["requests_per_minute"], tokens_per_minute=r["tokens_per_minute"],
        created_at=r["created_at"], revoked_at=r["revoked_at"], role=r["role"],
    )


def release(r: Row) -> ReleaseRecord:
    return ReleaseRecord(route=r["route"], version=r["version"], label=r["label"], content_hash=r["content_hash"],
                         content=json.loads(r["content"]), created_at=r["created_at"])


def evidence(r: Row) -> EvidenceRecord:
    return EvidenceRecord(evidence_id=r["evidence_id"], route=r["route"], version=r["version"], kind=r["kind"],
                          passed=None if r["passed"] is None else bool(r["passed"]),
                          summary=json.loads(r["summary"]), created_at=r["created_at"])


def audit(r: Row) -> AuditRecord:
    return AuditRecord(r["seq"], r["ts"], r["actor"], r["action"], r["target"], json.loads(r["details"]),
                       r["prev_hash"], r["hash"])


def trace_link(r: Row, with_bodies: bool) -> TraceLink:
    body = columns = None
    if with_bodies and r["t_trace_id"] is not None:
        body = r["body"]
        columns = {"trace_id": r["t_trace_id"], **{col: r[f"t_{col}"] for col in TRACE_COLUMNS[1:]}}
    return TraceLink(r["seq"], r["trace_id"], r["ts"], r["route"], r["body_sha256"], r["prev_hash"], r["hash"],
                     r["expired_by"], body, columns)


def alert_state(r: Row) -> AlertStateRecord:
    return AlertStateRecord(alert=r["alert"], state=r["state"], fingerprint=r["fingerprint"],
                            firing_since=r["firing_since"], last_notified=r["last_notified"],
                            details=json.loads(r["details"]), revision=r["revision"], updated_at=r["updated_at"])


def incident(r: Row) -> IncidentRecord:
    return IncidentRecord(**{name: r[name] for name in r.keys()})


def feedback(r: Row, **linked: Any) -> FeedbackRecord:
    fields = {
        "feedback_id": r["feedback_id"], "request_id": r["request_id"], "ts": r["ts"], "rating": r["rating"],
        "score": r["score"], "comment": r["comment"], "user": r["user_ref"], "key_id": r["key_id"],
        "rater": r["rater"], "status": r["status"], "route": r["route"], "release": r["release"],
        "linked_at": r["linked_at"],
    }
    return FeedbackRecord(**(fields | linked))
