"""Persistent state behind one interface: API keys, the release registry and traces.

SQLite (a file in the data folder, the default) or PostgreSQL (several replicas sharing one
database), chosen by the database URL (lockgate.settings); the SQL is the same for both."""

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
from lockgate.store.sql_store import SqlStore, open_url
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
    "SqlStore",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "TraceLink",
    "open_url",
]
