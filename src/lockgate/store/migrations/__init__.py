"""Schema migrations (Alembic), run by `Store.migrate()`: users need no alembic.ini and no command.

Each revision in `versions/` is one step of the schema, the same for SQLite and PostgreSQL. Every
process that opens the store migrates at start, so upgrades must be safe to race: the whole upgrade
is one transaction holding the database's migration lock (SQLite: the file's write lock, taken by
`BEGIN IMMEDIATE`; PostgreSQL: an advisory lock; DDL is transactional on both), and the process
that waited finds the schema already current.

Data folders from before migrations (the store created its tables itself, and there is no
`alembic_version` table) are adopted by the first revision: it creates only what is missing, adds
the columns such a file may lack, and stamps it, keeping every row.

A new revision: copy the newest file in `versions/`, set `revision`/`down_revision`, write `upgrade()`
with `op.*` calls that work on both engines (SQLite alters tables through `op.batch_alter_table`),
and set HEAD below to its revision. tests/test_migrations.py checks HEAD is Alembic's head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lockgate.store.base import StoreUnavailable
from lockgate.store.engines import WRITE_LOCKS, Connection, Engine, PostgresEngine

HEAD = "0001"
SCRIPT_LOCATION = Path(__file__).resolve().parent
_MIGRATION_TIMEOUT_S = 60  # another process may be migrating: wait for it this long


def current_revision(engine: Engine, c: Connection) -> str | None:
    """The revision the database is at; None before the first migration (new, or made before migrations)."""
    if c.execute(engine.table_exists_sql, ("alembic_version",)).fetchone() is None:
        return None
    row = c.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrades the database to `revision` in one transaction; StoreUnavailable if it cannot be reached."""
    import sqlalchemy as sa
    from alembic import command
    from sqlalchemy.pool import NullPool

    postgres = isinstance(engine, PostgresEngine)
    connect_args: dict[str, Any] = {"connect_timeout": 10} if postgres else {"timeout": _MIGRATION_TIMEOUT_S}
    sa_engine = sa.create_engine(engine.sqlalchemy_url(), poolclass=NullPool, connect_args=connect_args)
    if not postgres:
        # pysqlite's own transaction handling would run DDL outside any transaction; this is
        # SQLAlchemy's recipe for taking control of it, with IMMEDIATE so racing migrators queue up.
        @sa.event.listens_for(sa_engine, "connect")
        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(sa_engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with sa_engine.begin() as conn:
            if postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:space, :lock)"),
                             {"space": 0x4C47, "lock": WRITE_LOCKS["migrate"]})
            command.upgrade(alembic_config(conn), revision)
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"cannot migrate the database at {engine.url}: {exc.orig}") from exc
    finally:
        sa_engine.dispose()
