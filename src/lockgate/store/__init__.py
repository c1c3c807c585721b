"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import (
    ApiKeyRecord,
    ChainHead,
    EvidenceRecord,
    FeedbackRecord,
    FeedbackSummary,
    ReleaseRecord,
    ReleaseWindow,
    RetentionCutoffs,
    Store,
    StoreUnavailable,
    TraceLink,
)
from lockgate.store.sqlite import SqliteStore

__all__ = [
    "ApiKeyRecord",
    "ChainHead",
    "EvidenceRecord",
    "FeedbackRecord",
    "FeedbackSummary",
    "ReleaseRecord",
    "ReleaseWindow",
    "RetentionCutoffs",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "TraceLink",
]
