"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import ApiKeyRecord, EvidenceRecord, ReleaseRecord, ReleaseWindow, Store, StoreUnavailable
from lockgate.store.sqlite import SqliteStore

__all__ = [
    "ApiKeyRecord", "EvidenceRecord", "ReleaseRecord", "ReleaseWindow", "SqliteStore", "Store", "StoreUnavailable",
]
