"""Fixtures every test shares, and the database the suite runs against.

`LOCKGATE_TEST_DATABASE=postgres` runs the suite against PostgreSQL: every SQLite file a test would
use is stood in for by a PostgreSQL database of its own (new, or emptied after an earlier test:
tests.harness.PgDatabases), which the stores the test opens (tests.harness.store_at), the `lockgate`
commands and gateways it starts (LOCKGATE_DATABASE_URL) and the fixtures its module shares all use.

Tests that cannot touch a store are marked `store_free` (their module says so) and are not repeated
there; the SQLite pass checks the marker is true, since there a marked test that opens a store fails.
Real-model tests (`model`) are not repeated either: what they store is what the fake-upstream gateway
tests store; the model is what they test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread, run_in_thread
from lockgate.store import SqlStore, open_url
from tests import harness
from tests.harness import (
    Gateway,
    PgDatabases,
    create_key,
    create_pg_database,
    drop_pg_database,
    free_port,
    write_config,
)

TEST_DATABASE = os.environ.get("LOCKGATE_TEST_DATABASE", "sqlite")
if TEST_DATABASE not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"LOCKGATE_TEST_DATABASE={TEST_DATABASE!r}: use sqlite (the default) or postgres")
POSTGRES = TEST_DATABASE == "postgres"
# Not repeated against PostgreSQL (see above); `sqlite_only` tests are about SQLite files themselves, and
# `postgres_only` ones about what only a server does (going down while the gateway runs).
_NOT_ON_POSTGRES = ("store_free", "model", "sqlite_only")


def pytest_configure(config: pytest.Config) -> None:
    if POSTGRES:
        import psycopg

        from tests.harness import PG_ADMIN_URL

        try:
            psycopg.connect(PG_ADMIN_URL, connect_timeout=5).close()
        except psycopg.Error as exc:
            raise pytest.UsageError(f"LOCKGATE_TEST_DATABASE=postgres needs PostgreSQL at {PG_ADMIN_URL} "
                                    f"(LOCKGATE_TEST_PG_ADMIN_URL): {exc}") from exc


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skipped_markers = _NOT_ON_POSTGRES if POSTGRES else ("postgres_only",)
    kept = [item for item in items if not any(item.get_closest_marker(m) for m in skipped_markers)]
    if len(kept) == len(items):
        return
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def pg_databases() -> Iterator[PgDatabases | None]:
    """On PostgreSQL: the tests' databases, copies of one migrated database (cheaper than migrating),
    set up before any fixture a module shares opens a store."""
    if not POSTGRES:
        yield None
        return
    url = create_pg_database()
    store = open_url(url)
    store.migrate()
    store.close()
    harness.pg_databases = PgDatabases(template=url.rsplit("/", 1)[1])
    yield harness.pg_databases
    harness.pg_databases.drop_all()
    harness.pg_databases = None
    drop_pg_database(url)


@pytest.fixture(autouse=True)
def test_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Proves `store_free` markers; on PostgreSQL, gives the test's databases back when it ends."""
    if request.node.get_closest_marker("store_free"):
        # Here, a store opened in this process or by a `lockgate` it starts fails the test.
        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("this test is marked store_free but opens a store: remove the marker")

        monkeypatch.setattr(SqlStore, "__init__", refuse)
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", "store-free-test://marked-store-free-but-opens-a-store")
    else:
        monkeypatch.delenv("LOCKGATE_DATABASE_URL", raising=False)
    yield
    if POSTGRES:
        harness.release_databases(under=tmp_path)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstreamThread]:
    """A fake OpenAI-compatible upstream on a real port; fault modes are chosen by model name."""
    server = run_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream_url(upstream: FakeUpstreamThread) -> str:
    """The fake upstream's base URL, for tests that only write it into a configuration."""
    return upstream.base_url


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator:
    """Starts `lockgate serve` processes; every one is stopped at the end of the test."""
    started: list[Gateway] = []

    def start(config: Path | None = None, *, workers: int = 1, data_dir: Path | None = None,
              env: dict[str, str] | None = None, wait_ready: bool = True) -> Gateway:
        gw = Gateway(data_dir=data_dir or tmp_path / "data", config=config, port=free_port(), workers=workers,
                     env=env or {})
        started.append(gw)
        return gw.start(wait_ready=wait_ready)

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def echo_gateway(tmp_path: Path, upstream: FakeUpstreamThread, start_gateway) -> tuple[Gateway, str]:
    """The `echo` route over the fake upstream, with a key that may use it."""
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    return start_gateway(config, data_dir=data_dir), key


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted at the end."""
    from tests.redis_helpers import SHARED_REDIS_URL, delete_prefix, unique_prefix

    prefix = unique_prefix()
    yield prefix
    delete_prefix(SHARED_REDIS_URL, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator:
    """A redis-server of this test's own, which it may kill and restart (tests.redis_helpers.PrivateRedis)."""
    from tests.redis_helpers import PrivateRedis

    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.kill()
