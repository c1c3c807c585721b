"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import (
    AlertStateRecord,
    ApiKeyRecord,
    ChainHead,
    EvidenceRecord,
    FeedbackRecord,
    FeedbackSummary,
    IncidentRecord,
    ReleaseRecord,
    ReleaseWindow,
    RetentionCutoffs,
    Store,
    StoreUnavailable,
    TraceLink,
)
from lockgate.store.sqlite import SqliteStore

__all__ = [
    "AlertStateRecord",
    "ApiKeyRecord",
    "ChainHead",
    "EvidenceRecord",
    "FeedbackRecord",
    "FeedbackSummary",
    "IncidentRecord",
    "ReleaseRecord",
    "ReleaseWindow",
    "RetentionCutoffs",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "TraceLink",
]
