"""The hash-chained audit log and trace chain: every kind of tampering is found and named, an
untouched log verifies, and the admin actions land in it. Real SQLite; tampering is done the way an
intruder would, with plain SQL on the database file."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockgate.audit.chain import chain_hash
from lockgate.audit.verify import Problem, verify_store
from lockgate.store import SqlStore
from tests.harness import create_key, run_cli, sql, store_at, write_config


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = store_at(tmp_path / "lockgate.sqlite3")
    s.migrate()
    for i in range(1, 7):
        s.append_audit("alice", "flag.set", f"route-{i}", {"value": i})
    s.insert_traces([_trace(f"tr-{i}", time.time() - 100 + i) for i in range(1, 6)])
    yield s
    s.close()


def _trace(trace_id: str, ts: float, route: str = "echo", status: int = 200) -> dict:
    return {"trace_id": trace_id, "ts": ts, "route": route, "release": f"{route}@1", "key_id": "key_x",
            "status": status, "outcome": "ok", "latency_ms": 1.5, "prompt": [{"role": "user", "content": "hi"}]}


def _sql(store: SqlStore, *statements: str) -> None:
    """Writes to the database behind the store's back, as an intruder with the file would."""
    for statement in statements:
        sql(store, statement)


def _problems(store: SqlStore) -> list[Problem]:
    result = verify_store(store)
    assert result.ok == (not result.problems)
    return result.problems


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- an untouched log -------------------------------------------------------------------------------


def test_an_untouched_log_and_trace_chain_verify(store: SqlStore):
    result = verify_store(store)
    assert result.ok, [str(p) for p in result.problems]
    assert (result.audit_records, result.trace_links) == (6, 5)
    assert result.audit_head is not None and result.audit_head.seq == 6
    assert result.trace_head is not None and result.trace_head.seq == 5


def test_records_read_back_as_written_and_chain_onto_each_other(store: SqlStore):
    records = store.list_audit()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2].details == {"value": 3} and records[2].actor == "alice"
    for before, after in zip(records, records[1:], strict=False):
        assert after.prev_hash == before.hash
        assert after.hash == chain_hash(before.hash, after.hashed_fields())
    assert [r.seq for r in store.list_audit(since_seq=4)] == [5, 6]
    assert [r.target for r in store.list_audit(action="flag.set", limit=2)] == ["route-1", "route-2"]


# -- the audit log: each kind of tampering ----------------------------------------------------------


def test_a_changed_field_is_named_as_a_hash_mismatch(store: SqlStore):
    _sql(store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind, problem.seq) == ("audit", "changed", 3)
    assert "hash mismatch at seq 3" in problem.message


def test_a_changed_and_rehashed_record_is_named_by_its_broken_successor(store: SqlStore):
    record = store.list_audit(since_seq=2, limit=1)[0]
    forged = {**record.hashed_fields(), "details": {"value": 999}}
    _sql(store, f"UPDATE audit_log SET details = '{{\"value\":999}}', hash = '{chain_hash(record.prev_hash, forged)}' "
                "WHERE seq = 3")
    problem = _only(_problems(store))
    assert (problem.kind, problem.seq) == ("changed", 3)
    assert "re-hashed" in problem.message and "audit record 4" in problem.message


def test_a_removed_middle_record_is_named_as_a_gap(store: SqlStore):
    _sql(store, "DELETE FROM audit_log WHERE seq = 4")
    problem = _only(_problems(store))
    assert (problem.kind, problem.seq) == ("removed", 4)
    assert "gap in seq between seq 3 and 5" in problem.message


def test_a_removed_first_record_is_named(store: SqlStore):
    _sql(store, "DELETE FROM audit_log WHERE seq = 1")
    problem = _only(_problems(store))
    assert (problem.kind, problem.seq) == ("removed", 1)
    assert "between the start and 2" in problem.message


def test_removed_last_records_are_caught_by_the_head_checkpoint(store: SqlStore):
    _sql(store, "DELETE FROM audit_log WHERE seq >= 5")
    problem = _only(_problems(store))
    assert (problem.kind, problem.seq) == ("removed", 5)
    assert "audit records 5 to 6 removed: missing head" in problem.message


def test_a_cut_tail_stays_visible_after_new_records_are_appended(store: SqlStore):
    _sql(store, "DELETE FROM audit_log WHERE seq = 6")
    store.append_audit("bob", "key.create", "key_new", {})
    problem = _only(_problems(store))
    assert (problem.kind, problem.seq) == ("removed", 6)
    assert "gap in seq between seq 5 and 7" in problem.message


def test_a_removed_head_checkpoint_is_reported(store: SqlStore):
    _sql(store, "DELETE FROM chain_heads WHERE chain = 'audit'")
    problem = _only(_problems(store))
    assert problem.kind == "removed" and "head checkpoint of the audit records is missing" in problem.message


def test_swapped_records_are_named_as_reordered(store: SqlStore):
    _sql(store, "UPDATE audit_log SET seq = -1 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 4",
         "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    problems = _problems(store)
    assert sorted((p.kind, p.seq) for p in problems) == [("reordered", 2), ("reordered", 4)]
    by_seq = {p.seq: p.message for p in problems}
    assert "stored at seq 4, it was written as seq 2" in by_seq[4]
    assert "stored at seq 2, it was written as seq 4" in by_seq[2]


def test_swapping_the_last_two_records_is_reordered_not_truncated(store: SqlStore):
    _sql(store, "UPDATE audit_log SET seq = -1 WHERE seq = 5", "UPDATE audit_log SET seq = 5 WHERE seq = 6",
         "UPDATE audit_log SET seq = 6 WHERE seq = -1")
    assert sorted((p.kind, p.seq) for p in _problems(store)) == [("reordered", 5), ("reordered", 6)]


def test_every_tampering_at_once_is_each_named(store: SqlStore):
    _sql(store, "UPDATE audit_log SET target = 'elsewhere' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 4",
         "DELETE FROM audit_log WHERE seq = 6")
    assert sorted((p.kind, p.seq) for p in _problems(store)) == [("changed", 2), ("removed", 4), ("removed", 6)]


# -- the trace chain --------------------------------------------------------------------------------


def test_a_modified_trace_body_is_named(store: SqlStore):
    body = json.dumps({**_trace("tr-3", 0), "outcome": "guarded"})
    _sql(store, f"UPDATE traces SET body = '{body}' WHERE trace_id = 'tr-3'")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind, problem.seq) == ("traces", "changed", 3)
    assert "trace tr-3" in problem.message and "body" in problem.message


def test_a_modified_trace_column_is_named(store: SqlStore):
    _sql(store, "UPDATE traces SET status = 500 WHERE trace_id = 'tr-2'")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind) == ("traces", "changed")
    assert "column status says 500, its body says 200" in problem.message


def test_a_deleted_trace_is_named(store: SqlStore):
    _sql(store, "DELETE FROM traces WHERE trace_id = 'tr-2'")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind, problem.seq) == ("traces", "removed", 2)
    assert "trace tr-2" in problem.message and "no retention run" in problem.message


def test_a_deleted_trace_with_its_link_is_a_gap(store: SqlStore):
    _sql(store, "DELETE FROM traces WHERE trace_id = 'tr-3'", "DELETE FROM trace_chain WHERE trace_id = 'tr-3'")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind, problem.seq) == ("traces", "removed", 3)
    assert "trace link 3 removed: gap in seq between seq 2 and 4" in problem.message


def test_the_newest_trace_deleted_with_its_link_is_caught_by_the_head(store: SqlStore):
    _sql(store, "DELETE FROM traces WHERE trace_id = 'tr-5'", "DELETE FROM trace_chain WHERE trace_id = 'tr-5'")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind, problem.seq) == ("traces", "removed", 5)


def test_swapped_trace_links_are_reordered(store: SqlStore):
    _sql(store, "UPDATE trace_chain SET seq = -1 WHERE seq = 1", "UPDATE trace_chain SET seq = 1 WHERE seq = 2",
         "UPDATE trace_chain SET seq = 2 WHERE seq = -1")
    assert sorted((p.chain, p.kind, p.seq) for p in _problems(store)) == [("traces", "reordered", 1),
                                                                           ("traces", "reordered", 2)]


def test_a_trace_inserted_behind_the_writers_back_is_named(store: SqlStore):
    body = json.dumps(_trace("forged", time.time()))
    _sql(store, "INSERT INTO traces (trace_id, ts, route, release, key_id, status, outcome, latency_ms, body) "
         f"VALUES ('forged', {time.time()}, 'echo', 'echo@1', 'k', 200, 'ok', 1, '{body}')")
    problem = _only(_problems(store))
    assert (problem.chain, problem.kind) == ("traces", "added") and "forged" in problem.message


def test_a_replayed_batch_is_neither_stored_nor_chained_twice(store: SqlStore):
    again = [_trace(f"tr-{i}", time.time()) for i in (4, 5)] + [_trace("tr-6", time.time())] * 2
    assert store.insert_traces(again) == 1
    assert store.insert_traces(again) == 0
    assert store.count_traces() == 6
    result = verify_store(store)
    assert result.ok and result.trace_links == 6


# -- through the command line -----------------------------------------------------------------------


def test_audit_verify_exits_0_when_intact_and_1_naming_each_broken_record(tmp_path: Path, store: SqlStore):
    ok = run_cli("audit", "verify", data_dir=tmp_path)
    assert "intact" in ok.stdout and "audit log: 6 record(s), head 6:" in ok.stdout
    _sql(store, "UPDATE audit_log SET details = '{}' WHERE seq = 2", "DELETE FROM traces WHERE trace_id = 'tr-1'")
    bad = run_cli("audit", "verify", data_dir=tmp_path, check=False)
    assert bad.returncode == 1
    assert "audit: changed: audit record 2 (flag.set) was changed: hash mismatch at seq 2" in bad.stdout
    assert "traces: removed: trace tr-1 (link 1) was removed" in bad.stdout


@pytest.mark.sqlite_only  # with a database URL the data is not in the folder
def test_audit_verify_on_a_folder_without_data_says_so(tmp_path: Path):
    result = run_cli("audit", "verify", data_dir=tmp_path / "nothing", check=False)
    assert result.returncode == 2 and "no Lockgate data" in result.stderr and "--data-dir" in result.stderr


def test_a_noted_head_exposes_a_consistently_rewritten_log(tmp_path: Path, store: SqlStore):
    """The honest limit of a hash chain: rewriting every hash verifies; a head kept elsewhere does not."""
    noted = run_cli("audit", "verify", data_dir=tmp_path).stdout.split("head ", 1)[1].split()[0]
    records = store.list_audit()
    _sql(store, "DELETE FROM audit_log")
    prev = "0" * 64
    for r in records:
        fields = {**r.hashed_fields(), "actor": "mallory"}
        digest = chain_hash(prev, fields)
        sql(store, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.seq, r.ts, "mallory", r.action, r.target, json.dumps(r.details), prev, digest))
        prev = digest
    sql(store, "UPDATE chain_heads SET hash = ? WHERE chain = 'audit'", (prev,))
    assert run_cli("audit", "verify", data_dir=tmp_path).returncode == 0  # a full rewrite verifies...
    result = run_cli("audit", "verify", "--expect-head", noted, data_dir=tmp_path, check=False)
    assert result.returncode == 1  # ...but not against the head noted before it
    assert "audit record 6 is not the one noted earlier" in result.stdout
    bad = run_cli("audit", "verify", "--expect-head", "six", data_dir=tmp_path, check=False)
    assert bad.returncode == 2 and "SEQ:HASH" in bad.stderr


def test_audit_list_filters_by_seq_and_action(tmp_path: Path, store: SqlStore):
    store.append_audit("bob", "key.revoke", "key_1", {"name": "ci"})
    listing = run_cli("audit", "list", "--since", "5", data_dir=tmp_path).stdout.splitlines()
    assert [line.split()[0] for line in listing[1:]] == ["6", "7"]
    only = run_cli("audit", "list", "--action", "key.revoke", "--json", data_dir=tmp_path).stdout.splitlines()
    assert [json.loads(line)["target"] for line in only] == ["key_1"]
    assert json.loads(only[0])["actor"] == "bob" and len(json.loads(only[0])["hash"]) == 64


# -- what gets recorded -----------------------------------------------------------------------------


def _actions(data_dir: Path) -> list[dict]:
    out = run_cli("audit", "list", "--json", data_dir=data_dir).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_key_creation_and_revocation_are_recorded_without_the_key(tmp_path: Path):
    key = create_key(tmp_path, "ci-bot", "--routes", "echo")
    run_cli("--actor", "ops-lead", "keys", "revoke", "ci-bot", data_dir=tmp_path)
    created, revoked = _actions(tmp_path)
    assert (created["action"], created["actor"]) == ("key.create", getpass.getuser())
    assert created["details"]["name"] == "ci-bot" and created["details"]["routes"] == ["echo"]
    assert (revoked["action"], revoked["actor"], revoked["target"]) == ("key.revoke", "ops-lead", created["target"])
    dump = json.dumps([created, revoked])
    assert key not in dump and key.split("-", 1)[1] not in dump
    assert run_cli("audit", "verify", data_dir=tmp_path).returncode == 0


def test_a_release_is_recorded_when_created_and_the_configuration_when_it_changes(tmp_path: Path, upstream,
                                                                                 start_gateway):
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    create_key(data_dir)
    for _ in range(2):  # the same configuration twice: nothing new the second time
        gw = start_gateway(config, data_dir=data_dir)
        gw.stop()
    write_config(config, upstream.base_url, route_extra="    retention_days: 3")
    gw = start_gateway(config, data_dir=data_dir)
    assert httpx.get(gw.base_url + "/healthz").status_code == 200
    run_cli("release", "create", data_dir=data_dir, config=config)
    actions = [(a["action"], a["target"]) for a in _actions(data_dir)]
    assert actions == [("key.create", actions[0][1]), ("release.create", "echo@1"), ("config.load", str(config)),
                       ("config.load", str(config))]
    first, second = [a for a in _actions(data_dir) if a["action"] == "config.load"]
    assert second["details"]["previous_hash"] == first["details"]["content_hash"] != second["details"]["content_hash"]
    assert run_cli("audit", "verify", data_dir=data_dir).returncode == 0
