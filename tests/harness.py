"""Runs real `lockgate serve` processes for tests: the gateway as a user starts it, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lockgate.store import SqliteStore, SqlStore, open_url
from lockgate.store.engines import PostgresEngine

REPO = Path(__file__).resolve().parents[1]
LOCKGATE = [sys.executable, "-m", "lockgate.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(
    *args: str, data_dir: Path, config: Path | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [*LOCKGATE, "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **database_env(data_dir), **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(
            f"lockgate {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


# When the suite runs against PostgreSQL (LOCKGATE_TEST_DATABASE=postgres, tests/conftest.py), each SQLite
# file a test would have used is stood in for by a PostgreSQL database of its own: the same file path, the
# same database, whoever opens it (the test, `lockgate` commands, gateways, fixtures shared by a module).
pg_databases: PgDatabases | None = None
_database_of_file: dict[Path, str] = {}


def database_url_at(path: Path) -> str | None:
    """The PostgreSQL database standing in for the SQLite file at `path`; None when running on SQLite."""
    if pg_databases is None:
        return None
    path = path.resolve()
    if path not in _database_of_file:
        _database_of_file[path] = pg_databases.take()
    return _database_of_file[path]


def database_env(data_dir: Path) -> dict[str, str]:
    """What a `lockgate` process started on `data_dir` needs in its environment to find its database."""
    url = database_url_at(data_dir / "lockgate.sqlite3")
    return {"LOCKGATE_DATABASE_URL": url} if url else {}


def release_databases(under: Path) -> None:
    """Gives back (emptied, for reuse) the databases of the files under a test's folder, as it ends."""
    assert pg_databases is not None
    for path in [p for p in _database_of_file if p.is_relative_to(under.resolve())]:
        pg_databases.give_back(_database_of_file.pop(path))


def store_at(path: Path) -> SqlStore:
    """The store at the SQLite file `path`, or the PostgreSQL database standing in for it. Not migrated."""
    url = database_url_at(path)
    return open_url(url) if url else SqliteStore(path)


def sql(store: SqlStore, statement: str, args: tuple = ()) -> list[tuple]:
    """Runs one statement (`?` placeholders) on the store's database behind the store's back, as an
    intruder or an operator's shell would; the rows it returns, if any."""
    with store.engine.connection() as c:
        cursor = c.execute(statement, args)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


@contextmanager
def store_outage(store: SqlStore) -> Iterator[None]:
    """The database is unavailable until the block ends. SQLite: another process (a backup, a migration,
    a stuck shell) holds the file's write lock (store_locked). PostgreSQL: the test's database refuses
    connections and every open one is cut, as a restart or a network failure would (the shared server
    stays up)."""
    if not isinstance(store.engine, PostgresEngine):
        with store_locked(store):
            yield
        return
    database = store.engine.conninfo.rsplit("/", 1)[1]
    with _pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@contextmanager
def store_locked(store: SqlStore) -> Iterator[None]:
    """Another process holds the write lock until the block ends: writers wait out their lock timeout
    and fail (StoreUnavailable), readers still read. SQLite: an exclusive transaction (WAL readers go
    on); PostgreSQL: a transaction holding every table in EXCLUSIVE mode (plain reads go on)."""
    if isinstance(store.engine, PostgresEngine):
        import psycopg

        with psycopg.connect(store.engine.conninfo) as locker:  # one transaction, rolled back on leaving
            tables = [r[0] for r in locker.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
            locker.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
            yield
            locker.rollback()
        return
    import sqlite3

    locker = sqlite3.connect(store.engine.path, timeout=10, isolation_level=None)  # type: ignore[attr-defined]
    try:
        locker.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()


def unreachable_store(tmp_path: Path) -> SqlStore:
    """A store whose database cannot be reached: a SQLite file under a path that is a file, or a
    PostgreSQL server on a port nothing listens on."""
    if pg_databases is not None:
        return open_url(f"postgresql://postgres@127.0.0.1:{free_port()}/closed")
    (tmp_path / "blocked").write_text("a file where a folder should be")
    return SqliteStore(tmp_path / "blocked" / "x" / "db.sqlite3")


def dump(store: SqlStore) -> str:
    """Every row of every table, as text: what someone with the database would see."""
    if isinstance(store.engine, PostgresEngine):
        tables = sql(store, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        tables = sql(store, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return "\n".join(f"{table}: {row}" for (table,) in tables for row in sql(store, f"SELECT * FROM {table}"))


PG_ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def _pg_admin() -> Iterator:
    """A connection for creating and dropping the tests' databases (never the tests' data)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        yield conn


_pg_databases = iter(range(1, 1 << 30))


def create_pg_database(template: str | None = None) -> str:
    """A new, empty (or copied from `template`) PostgreSQL database of this test process; its URL."""
    name = f"lockgate_pgtest_{os.getpid()}_{next(_pg_databases)}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


class PgDatabases:
    """Migrated databases for one test each, emptied and reused: a fresh database per test costs half a
    second (CREATE DATABASE copies and checkpoints); emptying one costs a fraction of that. Emptied
    means as new: every table truncated, identities restarted, every connection of the last test cut."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.free: list[str] = []
        self.used: list[str] = []

    def take(self) -> str:
        url = self.free.pop() if self.free else create_pg_database(template=self.template)
        self.used.append(url)
        return url

    def give_back(self, url: str) -> None:
        import psycopg

        database = url.rsplit("/", 1)[1]
        try:
            with _pg_admin() as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
            with psycopg.connect(url, autocommit=True, options="-c lock_timeout=5000") as conn:
                tables = [r[0] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_name <> 'alembic_version'")]
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        except psycopg.Error:
            drop_pg_database(url)  # could not be emptied: never reused
        else:
            self.free.append(url)
        self.used.remove(url)

    def drop_all(self) -> None:
        for url in self.free + self.used:
            drop_pg_database(url)


def create_key(data_dir: Path, name: str = "test", *extra: str, env: dict[str, str] | None = None) -> str:
    out = run_cli("keys", "create", "--name", name, *extra, data_dir=data_dir, env=env).stdout
    return out.strip().splitlines()[-1]


@dataclass
class Gateway:
    """One `lockgate serve` process tree (a supervisor and its workers when workers > 1)."""

    data_dir: Path
    config: Path | None
    port: int
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def start(self, *, wait_ready: bool = True, timeout_s: float = 120) -> Gateway:
        cmd = [*LOCKGATE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--workers", str(self.workers)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self.log_path = self.data_dir / f"serve-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, "LOCKGATE_LOG_LEVEL": "WARNING", **database_env(self.data_dir), **self.env}
        # A session of its own, so the whole tree (supervisor and workers) can be signalled at once.
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait("/readyz" if wait_ready else "/healthz", timeout_s)
        return self

    def _wait(self, path: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready on {path} after {timeout_s}s:\n{self.logs()}")

    def trace(self, request_id: str, wait_s: float = 3.0) -> dict:
        """The request's trace from the store, waiting for the journal to flush it."""
        deadline = time.monotonic() + wait_s
        while True:
            with closing(store_at(self.data_dir / "lockgate.sqlite3")) as store:
                trace = store.get_trace(request_id)
            if trace is not None:
                return trace
            if time.monotonic() > deadline:
                raise AssertionError(f"no trace {request_id} after {wait_s}s:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        """Graceful: SIGTERM, as systemd or a terminal would."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL to every process of the gateway: nothing gets to clean up."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


# The smallest configuration that parses: one route over an upstream nobody calls (parsing tests).
ONE_ROUTE_YAML = """
version: 1
backends:
  up: {kind: openai, base_url: "http://127.0.0.1:9"}
routes:
  echo:
    serve: v1
    releases:
      v1: {backend: up, model: ok}
"""


def write_config(path: Path, upstream_url: str, *, model: str = "ok", release_extra: str = "",
                 route_extra: str = "", server_extra: str = "", backend_extra: str = "") -> Path:
    """A one-route configuration (`echo`) over one HTTP backend (`up`), with room for extra YAML."""
    path.write_text(f"""
version: 1
server:
  max_body_bytes: 65536
{server_extra}
backends:
  up:
    kind: openai
    base_url: {upstream_url}
{backend_extra}
routes:
  echo:
    serve: v1
{route_extra}
    releases:
      v1:
        backend: up
        model: {model}
        system_prompt: You are a test.
{release_extra}
""")
    return path
