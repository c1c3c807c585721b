"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import ApiKeyRecord, EvidenceRecord, ReleaseRecord, Store, StoreUnavailable
from lockgate.store.sqlite import SqliteStore

__all__ = ["ApiKeyRecord", "EvidenceRecord", "ReleaseRecord", "SqliteStore", "Store", "StoreUnavailable"]
