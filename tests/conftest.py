"""Fixtures every test shares, and the database the suite runs against.

`LOCKGATE_TEST_DATABASE=postgres` runs the suite against PostgreSQL: every test gets a database of
its own (new, or emptied after an earlier test: tests.harness.PgDatabases), named in
LOCKGATE_DATABASE_URL so that every store the test opens (tests.harness.store_at) and every
`lockgate` it starts uses it. Tests that cannot touch a store are marked `store_free` (their module
says so) and are not repeated there; the SQLite pass checks the marker is true, since there a marked
test that opens a store fails. Real-model tests (`model`) are not repeated either: what they store
is what the fake-upstream gateway tests store; the model is what they test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread, run_in_thread
from lockgate.store import SqlStore, open_url
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
# Not repeated against PostgreSQL (see above); `sqlite_only` tests are about SQLite files themselves.
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
    if not POSTGRES:
        return
    kept = [item for item in items if not any(item.get_closest_marker(m) for m in _NOT_ON_POSTGRES)]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """The tests' databases, copies of one migrated database (a copy is cheaper than migrating)."""
    url = create_pg_database()
    store = open_url(url)
    store.migrate()
    store.close()
    databases = PgDatabases(template=url.rsplit("/", 1)[1])
    yield databases
    databases.drop_all()
    drop_pg_database(url)


@pytest.fixture(autouse=True)
def test_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The test's own PostgreSQL database (its URL) when the suite runs against PostgreSQL, else None."""
    if request.node.get_closest_marker("store_free"):
        # Proves the marker: here, a store opened in this process or by a `lockgate` it starts fails.
        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("this test is marked store_free but opens a store: remove the marker")

        monkeypatch.setattr(SqlStore, "__init__", refuse)
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", "store-free-test://marked-store-free-but-opens-a-store")
        yield None
        return
    if not POSTGRES:
        monkeypatch.delenv("LOCKGATE_DATABASE_URL", raising=False)
        yield None
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = databases.take()
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", url)
    yield url
    databases.give_back(url)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstreamThread]:
    """A fake OpenAI-compatible upstream on a real port; fault modes are chosen by model name."""
    server = run_in_thread()
    yield server
    server.stop()


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
