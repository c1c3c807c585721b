"""Schema migrations and the database URL, as an operator meets them: `lockgate` migrates at start,
adopts a data folder made before migrations without losing a row, and says clearly when the database
URL is wrong or the database is not there."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from lockgate.store import migrations, open_url
from tests.conftest import POSTGRES
from tests.harness import LOCKGATE, create_pg_database, drop_pg_database, free_port, run_cli, sql

# The schema as the store's first release created it (git history of lockgate/store/sqlite.py): keys
# without roles, traces without the columns live analysis sums, none of the tables added since.
FIRST_SCHEMA = """
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, routes TEXT,
    requests_per_minute INTEGER, tokens_per_minute INTEGER, created_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE releases (
    route TEXT NOT NULL, version INTEGER NOT NULL, label TEXT NOT NULL, content_hash TEXT NOT NULL,
    content TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (route, version), UNIQUE (route, content_hash)
);
CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY, ts REAL NOT NULL, route TEXT, release TEXT, key_id TEXT, status INTEGER NOT NULL,
    outcome TEXT NOT NULL, latency_ms REAL, body TEXT NOT NULL
);
CREATE INDEX traces_ts ON traces (ts);
"""


def _lockgate(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOCKGATE, "--database-url", database_url, "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """The URL of a database nothing has been written to yet, of the engine the suite runs against."""
    if not POSTGRES:
        yield f"sqlite:///{tmp_path / 'new' / 'lockgate.sqlite3'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_the_head_revision_is_alembics_head():
    """migrate() skips Alembic when the database says HEAD: HEAD must be the newest revision."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(migrations.alembic_config()).get_current_head() == migrations.HEAD


def test_processes_starting_at_once_on_a_new_database_migrate_it_once(tmp_path: Path, empty_database: str):
    starts = [subprocess.Popen([*LOCKGATE, "--database-url", empty_database, "--data-dir", str(tmp_path / f"d{i}"),
                                "keys", "create", "--name", f"k{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for i in range(4)]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in starts]
    assert all(code == 0 for code, _ in outcomes), outcomes
    with closing(open_url(empty_database)) as store:
        assert sql(store, "SELECT version_num FROM alembic_version") == [(migrations.HEAD,)]
        assert sorted(k.name for k in store.list_keys()) == ["k0", "k1", "k2", "k3"]


@pytest.mark.sqlite_only  # data folders from before migrations were SQLite files
def test_a_data_folder_from_before_migrations_is_adopted_with_every_row(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "lockgate.sqlite3") as conn:
        conn.executescript(FIRST_SCHEMA)
        conn.execute("INSERT INTO api_keys VALUES ('key_old', 'legacy', 'hash-old', NULL, 5, NULL, 1.0, NULL)")
        conn.execute("INSERT INTO releases VALUES ('echo', 1, 'v1', 'h1', '{\"model\": \"ok\"}', 2.0)")
        conn.execute("INSERT INTO traces VALUES ('tr-old', 3.0, 'echo', 'echo@1', 'key_old', 502, 'upstream_error', "
                     "12.5, '{\"trace_id\": \"tr-old\"}')")
    conn.close()

    listing = run_cli("keys", "list", data_dir=data_dir).stdout  # any command migrates at start
    assert "legacy" in listing

    with closing(open_url(f"sqlite:///{data_dir / 'lockgate.sqlite3'}")) as store:
        assert sql(store, "SELECT version_num FROM alembic_version") == [(migrations.HEAD,)]
        [key] = store.list_keys()
        assert (key.key_id, key.requests_per_minute, key.role) == ("key_old", 5, "app")
        assert [(r.release_id, r.content) for r in store.list_releases()] == [("echo@1", {"model": "ok"})]
        assert store.get_trace("tr-old") == {"trace_id": "tr-old"}
        # The added columns read as their defaults for old rows (not recomputed: the old rows are as stored).
        assert sql(store, "SELECT release_failed, guard_violation, prompt_tokens, shadow_of FROM traces") == [
            (0, 0, 0, None)]
        # The tables and indexes added since are there, and work.
        assert {name for (name,) in sql(store, "SELECT name FROM sqlite_master WHERE type = 'index'")} >= {
            "traces_ts", "traces_route_ts", "feedback_status", "incidents_status"}
        assert store.append_audit("ops", "test.adopted", "store", {}).seq == 1
        assert store.insert_traces([{"trace_id": "tr-new", "ts": 4.0, "route": "echo", "status": 200,
                                     "outcome": "ok"}]) == 1

    again = run_cli("keys", "list", data_dir=data_dir).stdout  # adopted once: the next start changes nothing
    assert "legacy" in again


def test_an_unreachable_database_is_named_and_the_command_fails_clearly(tmp_path: Path):
    url = f"postgresql://lockgate@127.0.0.1:{free_port()}/lockgate"
    result = _lockgate("keys", "list", database_url=url, data_dir=tmp_path)
    assert result.returncode == 2
    assert f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in result.stderr and "unavailable" in result.stderr


def test_a_database_url_of_an_unknown_kind_says_which_are_known(tmp_path: Path):
    result = _lockgate("keys", "list", database_url="mysql://root@localhost/lockgate", data_dir=tmp_path)
    assert result.returncode == 2
    assert "not supported" in result.stderr and "postgresql://" in result.stderr and "sqlite:///" in result.stderr


def test_a_password_in_the_database_url_is_never_printed(tmp_path: Path):
    url = f"postgresql://lockgate:s3cret-pw@127.0.0.1:{free_port()}/lockgate"
    result = _lockgate("keys", "list", database_url=url, data_dir=tmp_path)
    assert result.returncode == 2 and "s3cret-pw" not in result.stderr + result.stdout
    assert "lockgate:***@127.0.0.1" in result.stderr
