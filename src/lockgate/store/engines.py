"""The two databases behind the store, and the little that differs between them.

The store's SQL is written once, in the dialect both engines share (`?` placeholders, `ON CONFLICT`,
`RETURNING`, no engine-specific functions). What differs lives here, and only here:

- how a connection is had: SQLite keeps one per thread (sqlite3 connections must not cross threads,
  and opening one is cheap); PostgreSQL borrows one from a small pool per process (a server
  connection is a process on the server, so a worker's many threads share a few);
- how a writer takes its lock: SQLite has one write lock per file (`BEGIN IMMEDIATE`); PostgreSQL
  takes transaction-scoped advisory locks named by what is being written (the audit chain, the
  trace chain, ...), so chains stay consistent across processes and machines while unrelated
  writes go on in parallel;
- which driver errors mean "the database is not there right now" (StoreUnavailable).

Both engines run in autocommit mode outside write transactions, so a read never holds a
transaction (and, on SQLite, never blocks a writer).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from lockgate.store.base import StoreUnavailable

# Write locks a transaction may take, in the one order every writer takes them (so no two writers can
# each hold a lock the other waits for). PostgreSQL advisory lock ids; SQLite has one lock for all.
WRITE_LOCKS = {"migrate": 1, "releases": 2, "audit": 3, "traces": 4, "feedback": 5}
# The first key of PostgreSQL's two-key advisory locks: 'LG', so other applications' locks never collide.
_LOCK_SPACE = 0x4C47

# How long a statement waits for a lock or a connection before the caller hears StoreUnavailable.
DEFAULT_TIMEOUT_S = 5.0


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the store's queries use of a connection: sqlite3.Connection has exactly this."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, rows: Any, /) -> Cursor: ...


class Engine(Protocol):
    url: str  # without a password, for messages
    table_exists_sql: str  # one `?`: the table's name

    def connection(self) -> Any: ...  # a context manager yielding a Connection
    def begin_write(self, c: Connection, locks: Sequence[str]) -> None: ...
    def sqlalchemy_url(self) -> str: ...  # for Alembic
    def close(self) -> None: ...


class SqliteEngine:
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def __init__(self, path: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.timeout_s = timeout_s
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")  # workers, the CLI and the loader share the file
                conn.execute("PRAGMA synchronous=NORMAL")
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        try:
            yield cast(Connection, conn)
        except sqlite3.OperationalError as exc:
            # Locked, unreadable or vanished: all mean "try again later" to the caller.
            self.close()
            raise StoreUnavailable(str(exc)) from exc

    def begin_write(self, c: Connection, locks: Sequence[str]) -> None:
        c.execute("BEGIN IMMEDIATE")  # the file's one write lock, taken first: no upgrade deadlocks

    def sqlalchemy_url(self) -> str:
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            finally:
                self._local.conn = None


class PostgresEngine:
    """psycopg 3 connections from a pool of at most `pool_size` per process.

    SQLAlchemy's QueuePool, used bare: it connects on demand, in the caller's thread, and has no
    background reconnection with growing back-off, so the first call after an outage ends gets
    through at once (psycopg_pool's reconnect back-off could keep a recovered database unused for
    many seconds). A connection that fails is dropped, never returned to the pool. The pool is made
    again in a forked child: its sockets must not be shared across processes."""

    table_exists_sql = ("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_name = ?")

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, pool_size: int = 4) -> None:
        self.conninfo = libpq_url(url)
        self.url = redacted(self.conninfo)
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self.conninfo, autocommit=True, row_factory=_pg_row, connect_timeout=max(1, round(self.timeout_s)),
            # A writer waits for another's lock as long as SQLite's busy timeout would; then the caller hears
            # StoreUnavailable and retries later, rather than hanging.
            options=f"-c lock_timeout={int(self.timeout_s * 1000)} -c idle_in_transaction_session_timeout=60000",
        )

    def _get_pool(self) -> Any:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                from sqlalchemy.pool import QueuePool

                self._pool = QueuePool(self._connect, pool_size=self.pool_size, max_overflow=0,
                                       timeout=self.timeout_s, reset_on_return="rollback")
                self._pool_pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        import psycopg
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        try:
            pooled = self._get_pool().connect()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.url} is unavailable: {exc}") from exc
        try:
            yield _PgConnection(pooled.dbapi_connection)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # connection lost, shutdown, lock_timeout
            if pooled.dbapi_connection.closed or pooled.dbapi_connection.broken:
                pooled.invalidate()
            raise StoreUnavailable(f"PostgreSQL at {self.url}: {exc}") from exc
        finally:
            pooled.close()  # back to the pool (rolled back if a transaction was left open), or gone if invalid

    def begin_write(self, c: Connection, locks: Sequence[str]) -> None:
        c.execute("BEGIN")
        for name in sorted(set(locks), key=WRITE_LOCKS.__getitem__):
            c.execute("SELECT pg_advisory_xact_lock(?, ?)", (_LOCK_SPACE, WRITE_LOCKS[name]))

    def sqlalchemy_url(self) -> str:
        return "postgresql+psycopg://" + self.conninfo.split("://", 1)[1]

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.dispose()
        self._pool = None


def engine_for(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SqliteEngine | PostgresEngine:
    """The engine for a database URL: `sqlite:///PATH` or `postgresql://USER@HOST:PORT/DB`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        rest = url.split("://", 1)[1]  # "/relative/path" or "//absolute/path", as SQLAlchemy writes them
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"database URL {url!r}: a SQLite URL names a file, e.g. sqlite:////var/lib/lockgate/db "
                             "(sqlite:/// then the path; an absolute path starts with a fourth slash)")
        return SqliteEngine(rest[1:], timeout_s=timeout_s)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return PostgresEngine(url, timeout_s=timeout_s)
    raise ValueError(f"database URL {redacted(url)!r} is not supported: use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DATABASE")


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (SQLAlchemy's `+psycopg` driver suffix dropped)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.lower() in ("postgresql+psycopg", "postgres") else url


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class _PgConnection:
    """A psycopg connection that takes the store's `?` placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(_pg_sql(sql), args)  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Any) -> Cursor:
        cur = self._conn.cursor()
        cur.executemany(_pg_sql(sql), list(rows))
        return cur  # type: ignore[no-any-return]


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    # The store's SQL has no literal `?` or `%` (no LIKE patterns, no string literals with them).
    return sql.replace("?", "%s")


class PgRow(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name, as sqlite3.Row is, so the queries work on both."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._index[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self._index)


def _pg_row(cursor: Any) -> Any:
    index = {col.name: i for i, col in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)
