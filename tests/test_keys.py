"""API keys through the CLI a user runs: printed once, stored hashed, listable, revocable."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from tests.harness import create_key, dump, run_cli, sql, store_at


def test_create_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(tmp_path: Path):
    result = run_cli("keys", "create", "--name", "ci", "--routes", "echo,other", data_dir=tmp_path)
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("lg-") and " " not in key and len(key) > 40
    with closing(store_at(tmp_path / "lockgate.sqlite3")) as store:
        assert "ci" in dump(store) and key not in dump(store), "the plaintext key must never be stored"
        [(routes,)] = sql(store, "SELECT routes FROM api_keys WHERE name = 'ci'")
    assert routes == '["echo", "other"]'


def test_list_shows_keys_without_secrets_and_revoke_hides_them(tmp_path: Path):
    key = create_key(tmp_path, "alice", "--rpm", "5")
    create_key(tmp_path, "bob")
    listing = run_cli("keys", "list", data_dir=tmp_path).stdout
    assert "alice" in listing and "bob" in listing and key not in listing
    assert run_cli("keys", "revoke", "alice", data_dir=tmp_path).returncode == 0
    assert "alice" not in run_cli("keys", "list", data_dir=tmp_path).stdout
    everything = run_cli("keys", "list", "--all", data_dir=tmp_path).stdout
    assert "revoked" in everything


def test_revoking_an_unknown_key_fails_clearly(tmp_path: Path):
    result = run_cli("keys", "revoke", "nobody", data_dir=tmp_path, check=False)
    assert result.returncode == 1
    assert "No active key" in result.stderr and "lockgate keys list" in result.stderr
