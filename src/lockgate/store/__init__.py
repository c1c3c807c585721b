"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import (
    ApiKeyRecord,
    EvidenceRecord,
    FeedbackRecord,
    FeedbackSummary,
    ReleaseRecord,
    Store,
    StoreUnavailable,
)
from lockgate.store.sqlite import SqliteStore

__all__ = [
    "ApiKeyRecord", "EvidenceRecord", "FeedbackRecord", "FeedbackSummary", "ReleaseRecord", "SqliteStore", "Store",
    "StoreUnavailable",
]
