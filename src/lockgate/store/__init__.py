"""Persistent state behind one interface: API keys, the release registry and traces."""

from lockgate.store.base import ApiKeyRecord, ReleaseRecord, Store, StoreUnavailable
from lockgate.store.sqlite import SqliteStore

__all__ = ["ApiKeyRecord", "ReleaseRecord", "SqliteStore", "Store", "StoreUnavailable"]
