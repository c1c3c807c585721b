"""Retention and privacy: each route's `trace_content` mode stores what it says, credentials are never
stored, user ids become keyed pseudonyms, and retention deletes exactly the traces past their
route's limit while the trace chain still verifies.

Content and credentials are checked through a real gateway over the fake upstream, which answers
"echo: <last user message>": whatever the client sends comes back in the answer, so both the
prompt and the output of a trace carry it.
"""

from __future__ import annotations

import hashlib
import json
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import orjson
import pytest

from lockgate.audit.verify import verify_store
from lockgate.config import ConfigError
from lockgate.config.loader import parse_config
from lockgate.devtools.fake_upstream import FakeUpstreamThread
from lockgate.observe.retention import DAY_S, RetentionSweeper
from lockgate.privacy.pseudonym import Pseudonyms
from lockgate.privacy.secret import SECRET_FILE, InstallSecretError, install_secret
from lockgate.store import SqlStore
from tests.harness import Gateway, create_key, dump, free_port, run_cli, sql, store_at

OPENAI_KEY = "sk-" + "A1b2C3d4E5" * 4
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "alice@example.com"
PROMPT = f"Mail {EMAIL} my key {OPENAI_KEY} and {AWS_KEY} please"

ROUTE = """
  {name}:
    serve: v1
    trace_content: {mode}
    releases:
      v1:
        backend: up
        model: ok
        guards: {{input: [], output: []}}
"""


def _config(url: str) -> str:
    routes = "".join(ROUTE.format(name=mode, mode=mode) for mode in ("full", "redacted", "hashed", "none"))
    # `guarded` keeps the default guards: its input secrets guard blocks the request, and the
    # blocked request's trace must still not hold the key.
    return f"""
version: 1
backends:
  up:
    kind: openai
    base_url: {url}
routes:{routes}
  guarded:
    serve: v1
    releases:
      v1:
        backend: up
        model: ok
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstreamThread) -> Iterator[tuple[Gateway, str]]:
    root: Path = tmp_path_factory.mktemp("privacy")
    config = root / "lockgate.yaml"
    config.write_text(_config(upstream.base_url))
    key = create_key(root / "data")
    gw = Gateway(data_dir=root / "data", config=config, port=free_port()).start()
    yield gw, key
    gw.stop()


def _ask(lab: tuple[Gateway, str], route: str, content: str = PROMPT, **extra) -> tuple[httpx.Response, dict]:
    gw, key = lab
    resp = httpx.post(gw.api_url + "/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": route, "messages": [{"role": "user", "content": content}], **extra})
    return resp, gw.trace(resp.headers["x-request-id"])


# -- content modes -----------------------------------------------------------------------------------


def test_full_keeps_prompt_and_output_but_masks_credentials(lab):
    resp, trace = _ask(lab, "full")
    assert resp.status_code == 200 and OPENAI_KEY in resp.json()["choices"][0]["message"]["content"]
    prompt, output = trace["prompt"][0]["content"], trace["output"]
    assert trace["content_mode"] == "full"
    assert prompt == f"Mail {EMAIL} my key <OPENAI_KEY_1> and <AWS_ACCESS_KEY_1> please"
    assert output == f"echo: {prompt}"


def test_full_masks_credentials_in_a_streamed_answer_too(lab):
    gw, key = lab
    with httpx.stream("POST", gw.api_url + "/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "full", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
                      timeout=10) as resp:
        received = "".join(resp.iter_text())
        request_id = resp.headers["x-request-id"]
    assert "A1b2C3d4E5" in received  # the client got its answer; only the trace is masked
    trace = gw.trace(request_id)
    assert trace["stream"] is True and trace["output"] and OPENAI_KEY not in trace["output"]
    assert "<OPENAI_KEY_1>" in trace["output"]


def test_redacted_replaces_pii_and_credentials_with_the_same_placeholders_in_prompt_and_output(lab):
    _, trace = _ask(lab, "redacted")
    assert trace["content_mode"] == "redacted"
    assert trace["prompt"] == [{"role": "user", "content": "Mail <EMAIL_1> my key <OPENAI_KEY_1> and "
                                                           "<AWS_ACCESS_KEY_1> please"}]
    assert trace["output"] == "echo: " + trace["prompt"][0]["content"]


def test_hashed_keeps_only_keyed_hashes_equal_for_equal_content(lab):
    gw, _ = lab
    _, first = _ask(lab, "hashed")
    _, again = _ask(lab, "hashed")
    _, other = _ask(lab, "hashed", "something else")
    assert first["content_mode"] == "hashed" and "prompt" not in first and "output" not in first
    assert first["prompt_hmac"] == again["prompt_hmac"] and first["output_hmac"] == again["output_hmac"]
    assert other["prompt_hmac"] != first["prompt_hmac"]
    prompt_json = orjson.dumps([{"role": "user", "content": PROMPT}])
    assert first["prompt_hmac"] != hashlib.sha256(prompt_json).hexdigest(), "a plain hash lets guesses be confirmed"
    assert len(first["prompt_hmac"]) == 64 and OPENAI_KEY not in json.dumps(first)


def test_none_keeps_no_content(lab):
    _, trace = _ask(lab, "none")
    assert trace["content_mode"] == "none"
    assert not {"prompt", "output", "prompt_hmac", "output_hmac"} & set(trace)
    assert trace["status"] == 200 and trace["completion_tokens"] > 0  # the rest of the trace is all there


# -- credentials ---------------------------------------------------------------------------------------


def test_no_credential_is_stored_anywhere(lab):
    gw, key = lab
    blocked, blocked_trace = _ask(lab, "guarded")
    assert blocked.status_code == 400 and blocked_trace["outcome"] == "guard_blocked"
    wrong_key = "lg-" + "Z9y8X7w6V5" * 4
    unauthenticated = httpx.post(gw.api_url + "/chat/completions", headers={"authorization": f"Bearer {wrong_key}"},
                                 json={"model": "full", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert unauthenticated.status_code == 401
    assert gw.trace(unauthenticated.headers["x-request-id"])["outcome"] == "unauthenticated"
    for route in ("full", "redacted", "hashed", "none"):
        _ask(lab, route)
    with closing(store_at(gw.data_dir / "lockgate.sqlite3")) as store:
        stored = dump(store)
    spooled = "".join(p.read_text(errors="replace") for p in (gw.data_dir / "spool").glob("trace-*"))
    assert blocked_trace["trace_id"] in stored  # the dump does hold the traces
    for secret in (key, key.split("-", 1)[1], wrong_key, OPENAI_KEY, AWS_KEY):
        assert secret not in stored and secret not in spooled


# -- pseudonyms ----------------------------------------------------------------------------------------


def test_user_ids_become_stable_keyed_pseudonyms(lab):
    gw, _ = lab
    alice = [_ask(lab, "none", "hi", user="alice")[1]["user"] for _ in range(2)]
    bob = _ask(lab, "none", "hi", user="bob")[1]["user"]
    assert alice[0] == alice[1] != bob and alice[0].startswith("u_") and "alice" not in alice[0]
    secret_file = gw.data_dir / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert alice[0] == Pseudonyms(install_secret(gw.data_dir)).of("alice")
    unkeyed = {"u_" + hashlib.sha256(v.encode()).hexdigest()[:16] for v in ("alice", "lockgate:alice")}
    assert alice[0] not in unkeyed


def test_another_install_gives_the_same_user_another_pseudonym(tmp_path: Path):
    first, second = install_secret(tmp_path / "a"), install_secret(tmp_path / "b")
    assert first != second and len(first) == 32
    assert Pseudonyms(first).of("alice") == Pseudonyms(install_secret(tmp_path / "a")).of("alice")
    assert Pseudonyms(first).of("alice") != Pseudonyms(second).of("alice")


def test_workers_creating_the_secret_at_once_all_get_the_same_one(tmp_path: Path):
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(install_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary files left behind


def test_a_damaged_secret_file_is_refused_with_what_to_do(tmp_path: Path):
    (tmp_path / SECRET_FILE).write_text("not hex")
    with pytest.raises(InstallSecretError, match="not a Lockgate install secret.*Restore it from a backup"):
        install_secret(tmp_path)


# -- retention -----------------------------------------------------------------------------------------

NOW = 1_800_000_000.0
RETENTION_CONFIG = """
version: 1
tracing:
  retention_days: {default}
backends:
  up: {{kind: openai, base_url: "http://127.0.0.1:9"}}
routes:
  short:
    serve: v1
    retention_days: 1
    releases: {{v1: {{backend: up, model: ok}}}}
  long:
    serve: v1
    retention_days: 30
    releases: {{v1: {{backend: up, model: ok}}}}
"""


def _trace(trace_id: str, age_days: float, route: str | None) -> dict:
    return {"trace_id": trace_id, "ts": NOW - age_days * DAY_S, "route": route, "release": None, "key_id": None,
            "status": 200, "outcome": "ok", "latency_ms": 1.0}


# Interleaved, as real traffic is: what retention deletes is not a prefix of the chain.
TRACES = [("long-40d", 40, "long"), ("short-2d", 2, "short"), ("gone-10d", 10, "retired"),
          ("long-10d", 10, "long"), ("short-12h", 0.5, "short"), ("none-10d", 10, None), ("long-2d", 2, "long"),
          ("gone-3d", 3, "retired")]
EXPIRED = {"long-40d", "short-2d", "gone-10d", "none-10d"}


@pytest.fixture
def retention_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    store.insert_traces([_trace(*t) for t in TRACES])
    yield store
    store.close()


def _sweeper(store: SqlStore, default_days: int | str = 7) -> RetentionSweeper:
    config = parse_config(RETENTION_CONFIG.format(default=default_days), source="test.yaml")
    return RetentionSweeper(store, config, clock=lambda: NOW)


def _remaining(store: SqlStore) -> set[str]:
    return {t["trace_id"] for t in store.recent_traces(limit=100)}


def test_retention_deletes_exactly_the_traces_past_their_routes_limit(retention_store: SqlStore):
    run = _sweeper(retention_store).sweep()
    assert _remaining(retention_store) == {t[0] for t in TRACES} - EXPIRED
    assert run is not None and run.action == "trace.retention" and run.details["deleted"] == len(EXPIRED)
    assert retention_store.list_audit(action="trace.retention") == [run]
    result = verify_store(retention_store)
    assert result.ok, [str(p) for p in result.problems]
    # Links 1 to 3 were all expired: pruned behind an anchor. Link 6 (none-10d) waits for link 4.
    assert result.trace_anchor.seq == 3 and result.traces_expired == 1 and result.trace_links == 5


def test_a_sweep_with_nothing_to_delete_records_nothing(retention_store: SqlStore):
    sweeper = _sweeper(retention_store)
    assert sweeper.sweep() is not None
    assert sweeper.sweep() is None
    assert len(retention_store.list_audit()) == 1


def test_without_retention_days_nothing_is_deleted(tmp_path: Path):
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    store.insert_traces([_trace("ancient", 5000, "retired")])
    assert _sweeper(store, default_days="null").sweep() is None
    assert _remaining(store) == {"ancient"}


def test_the_sweeper_runs_at_its_first_call_and_then_once_per_interval(retention_store: SqlStore):
    now = [NOW]
    config = parse_config(RETENTION_CONFIG.format(default=7), source="test.yaml")
    sweeper = RetentionSweeper(retention_store, config, interval_s=300, clock=lambda: now[0])
    sweeper()
    assert len(_remaining(retention_store)) == len(TRACES) - len(EXPIRED)
    retention_store.insert_traces([_trace("short-late", 2, "short")])
    now[0] += 299
    sweeper()
    assert "short-late" in _remaining(retention_store)
    now[0] += 1
    sweeper()
    assert "short-late" not in _remaining(retention_store)


def test_tampering_is_still_caught_after_a_sweep(retention_store: SqlStore):
    run = _sweeper(retention_store).sweep()
    assert run is not None
    sql(retention_store, "UPDATE traces SET outcome = 'error' WHERE trace_id = 'long-10d'")
    # A young trace removed and dressed up as deleted by the retention run: the run's cutoff says no.
    sql(retention_store, "DELETE FROM traces WHERE trace_id = 'short-12h'")
    sql(retention_store, f"UPDATE trace_chain SET expired_by = {run.seq} WHERE trace_id = 'short-12h'")
    problems = verify_store(retention_store).problems
    assert sorted((p.kind, p.message.split(" (")[0]) for p in problems) == [
        ("changed", "trace long-10d"), ("removed", "trace short-12h")]
    assert any("retention run 1 does not cover it" in p.message for p in problems)


def test_the_chain_goes_on_from_its_anchor_after_its_oldest_links_are_pruned(retention_store: SqlStore):
    config = parse_config(RETENTION_CONFIG.format(default=7), source="test.yaml")
    later = NOW + 40 * DAY_S  # everything stored so far is past every limit
    RetentionSweeper(retention_store, config, clock=lambda: later).sweep()
    assert _remaining(retention_store) == set()
    anchor = verify_store(retention_store).trace_anchor
    assert anchor.seq == len(TRACES)
    retention_store.insert_traces([_trace(f"new-{i}", -40, "long") for i in range(3)])
    result = verify_store(retention_store)
    assert result.ok and result.trace_links == 3, [str(p) for p in result.problems]
    sql(retention_store, "DELETE FROM trace_chain WHERE trace_id = 'new-0'")
    sql(retention_store, "DELETE FROM traces WHERE trace_id = 'new-0'")
    problem = verify_store(retention_store).problems[0]
    assert (problem.kind, problem.seq) == ("removed", len(TRACES) + 1)


def test_the_gateway_sweeps_at_start_and_the_log_still_verifies(tmp_path: Path, upstream, start_gateway):
    data_dir = tmp_path / "data"
    config = tmp_path / "lockgate.yaml"
    config.write_text(RETENTION_CONFIG.format(default=7).replace("http://127.0.0.1:9", upstream.base_url))
    create_key(data_dir)
    store = store_at(data_dir / "lockgate.sqlite3")
    store.migrate()
    now = time.time()
    store.insert_traces([{**_trace(t, 0, route), "ts": now - age * DAY_S} for t, age, route in TRACES])
    start_gateway(config, data_dir=data_dir)
    deadline = time.monotonic() + 30
    while _remaining(store) != {t[0] for t in TRACES} - EXPIRED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _remaining(store) == {t[0] for t in TRACES} - EXPIRED
    assert "intact" in run_cli("audit", "verify", data_dir=data_dir).stdout
    listing = run_cli("audit", "list", "--action", "trace.retention", data_dir=data_dir).stdout
    assert "lockgate:retention" in listing and "deleted=4" in listing


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("route_extra", "expected"), [
    ("retention_days: 0", "retention_days"),
    ("trace_content: partial", "trace_content"),
])
def test_bad_privacy_settings_are_refused_with_the_key_named(route_extra: str, expected: str):
    text = RETENTION_CONFIG.format(default=7).replace("    retention_days: 1\n", f"    {route_extra}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="lockgate.yaml")
    assert f"routes.short.{expected}" in str(err.value)


def test_retention_defaults_to_fourteen_days():
    config = parse_config(RETENTION_CONFIG.format(default=7).replace("tracing:\n  retention_days: 7\n", ""),
                          source="x.yaml")
    assert config.tracing.retention_days == 14
