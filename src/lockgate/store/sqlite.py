"""SQLite store: the embedded default, one file in the data folder (the SQL is lockgate.store.queries')."""

from __future__ import annotations

from pathlib import Path

from lockgate.store.engines import DEFAULT_TIMEOUT_S, SqliteEngine
from lockgate.store.sql_store import SqlStore


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(SqliteEngine(path, timeout_s=timeout_s))
        self.path = Path(path)
