"""The store: one implementation of every query for SQLite and PostgreSQL (lockgate.store.engines says
what differs), assembled from one query group per area (lockgate.store.queries)."""

from __future__ import annotations

from lockgate.store.engines import DEFAULT_TIMEOUT_S, Engine, engine_for
from lockgate.store.queries.chains import AuditQueries
from lockgate.store.queries.feedback import FeedbackQueries
from lockgate.store.queries.incidents import IncidentQueries
from lockgate.store.queries.registry import RegistryQueries
from lockgate.store.queries.state import StateQueries
from lockgate.store.queries.traces import TraceQueries


class SqlStore(RegistryQueries, AuditQueries, TraceQueries, FeedbackQueries, StateQueries, IncidentQueries):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        """The database's URL (without a password): where this store's data is."""
        return self.engine.url

    def migrate(self) -> None:
        """Brings the schema to the newest revision (lockgate.store.migrations); cheap when it is there."""
        from lockgate.store import migrations

        if self._read(lambda c: migrations.current_revision(self.engine, c)) != migrations.HEAD:
            migrations.upgrade(self.engine)

    def close(self) -> None:
        self.engine.close()


def open_url(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SqlStore:
    """The store at a database URL (`sqlite:///PATH`, `postgresql://...`), not migrated yet."""
    return SqlStore(engine_for(url, timeout_s=timeout_s))
