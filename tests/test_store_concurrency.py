"""Several processes writing one store at once, as gateway replicas do: chains stay whole, no trace is
stored twice or lost, and of two compare-and-set writers expecting the same revision exactly one wins.

Against PostgreSQL (LOCKGATE_TEST_DATABASE=postgres) these are separate processes with separate
connection pools, which is what separate machines are to the database; against SQLite, separate
processes sharing the file.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
from contextlib import closing
from pathlib import Path
from typing import Any

from lockgate.audit.chain import TRACE_CHAIN
from lockgate.audit.verify import verify_store
from lockgate.store import AlertStateRecord, SqlStore, StoreUnavailable, open_url
from tests.harness import sql, store_at

WRITERS = 4
TRACES = 300  # every writer offers every one of them, in its own order and batches


def _trace(i: int) -> dict[str, Any]:
    return {"trace_id": f"tr-{i:04d}", "ts": 1_700_000_000.0 + i, "route": "echo", "release": "echo@1",
            "key_id": "key_x", "status": 200, "outcome": "ok", "latency_ms": 2.0}


def _retrying(fn: Any) -> Any:
    """Callers retry on StoreUnavailable (the journal does); a writer that waited too long tries again."""
    while True:
        try:
            return fn()
        except StoreUnavailable:
            continue


def _writer(url: str, writer: int, start: Any, results: Any) -> None:
    store = open_url(url)
    rng = random.Random(writer)
    order = list(range(TRACES))
    rng.shuffle(order)
    stored = audited = cas_wins = 0
    start.wait()
    while order:
        size = rng.randint(1, 40)
        batch, order = order[:size], order[size:]
        stored += _retrying(lambda b=batch: store.insert_traces([_trace(i) for i in b]))
        _retrying(lambda b=batch: store.append_audit(f"writer-{writer}", "test.write", "store", {"batch": len(b)}))
        audited += 1
        # Read-modify-write with compare-and-set, as the rollout controller does: retried on a lost race.
        while True:
            current = _retrying(lambda: store.get_route_state("echo"))
            revision, body = current if current else (0, {"writes": []})
            if _retrying(lambda r=revision, b=body: store.put_route_state(
                    "echo", {"writes": [*b["writes"], writer]}, r)):
                cas_wins += 1
                break
    store.close()
    results.put((writer, stored, audited, cas_wins))


def _race_once(url: str, writer: int, start: Any, results: Any) -> None:
    store = open_url(url)
    start.wait()
    route = store.put_route_state("race", {"winner": writer}, 0)
    alert = store.put_alert_state(AlertStateRecord("race", "firing", "fp", details={"winner": writer}), 0)
    store.close()
    results.put((writer, route, alert))


def _run(target: Any, url: str) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(WRITERS), ctx.Queue()
    processes = [ctx.Process(target=target, args=(url, w, start, results)) for w in range(WRITERS)]
    for p in processes:
        p.start()
    out: list[tuple] = []
    while len(out) < len(processes):
        try:
            out.append(results.get(timeout=1))
        except queue.Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not failed, f"a writer died (exit codes {failed}); its error is above"
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def _migrated(tmp_path: Path) -> SqlStore:
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    return store


def test_concurrent_writers_keep_both_chains_whole_and_store_each_trace_once(tmp_path: Path):
    with closing(_migrated(tmp_path)) as store:
        results = _run(_writer, store.url)

        assert sum(r[1] for r in results) == TRACES  # each trace stored by exactly one writer
        [(rows, distinct)] = sql(store, "SELECT COUNT(*), COUNT(DISTINCT trace_id) FROM traces")
        assert rows == distinct == TRACES
        [(links, first, last)] = sql(store, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM trace_chain")
        assert (links, first, last) == (TRACES, 1, TRACES)  # one link each, no gap, no seq twice
        assert store.chain_head(TRACE_CHAIN).seq == TRACES

        audited = sum(r[2] for r in results)
        assert [r.seq for r in store.list_audit()] == list(range(1, audited + 1))
        verification = verify_store(store)
        assert verification.ok, [str(p) for p in verification.problems]
        assert (verification.audit_records, verification.trace_links) == (audited, TRACES)

        # No compare-and-set write was lost: the state holds every winning write, in revision order.
        revision, body = store.get_route_state("echo")
        assert revision == sum(r[3] for r in results) == len(body["writes"])
        assert sorted(body["writes"]) == sorted(w for w, *_, wins in results for _ in range(wins))


def test_of_writers_racing_to_create_the_same_state_exactly_one_wins(tmp_path: Path):
    with closing(_migrated(tmp_path)) as store:
        results = _run(_race_once, store.url)
        route_winners = [w for w, route, _ in results if route]
        alert_winners = [w for w, _, alert in results if alert]
        assert len(route_winners) == 1 and len(alert_winners) == 1
        assert store.get_route_state("race") == (1, {"winner": route_winners[0]})
        stored = store.get_alert_state("race")
        assert stored.revision == 1 and stored.details == {"winner": alert_winners[0]}
