"""Durability of traces and shared state, with real `lockgate serve` processes over real HTTP.

What is promised (see `lockgate.observe.journal`): a trace reaches disk before its response is
acknowledged; the request path never waits on the database; a database outage only delays traces;
a SIGKILL loses no acknowledged trace; a graceful stop flushes the spool; and per-key rate limits
hold across worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx
import psutil
import pytest

from lockgate.observe.journal import TraceJournal
from tests.harness import Gateway, create_key, run_cli, sql, store_at, store_locked, store_outage, write_config

CHAT = "/v1/chat/completions"


# -- helpers -------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Polls `predicate` until it holds or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def chat_body(text: str = "ping") -> dict:
    return {"model": "echo", "messages": [{"role": "user", "content": text}]}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def spool_files(data_dir: Path) -> list[str]:
    spool = data_dir / "spool"
    return sorted(p.name for p in spool.glob("trace-*")) if spool.exists() else []


def trace_id_counts(data_dir: Path) -> Counter[str]:
    """trace_id -> rows, read with a connection of our own (WAL: readers never wait on writers)."""
    with closing(store_at(data_dir / "lockgate.sqlite3")) as store:
        return Counter({tid: n for tid, n in sql(store, "SELECT trace_id, COUNT(*) FROM traces GROUP BY trace_id")})


def trace_totals(data_dir: Path) -> tuple[int, int]:
    with closing(store_at(data_dir / "lockgate.sqlite3")) as store:
        [(total, distinct)] = sql(store, "SELECT COUNT(*), COUNT(DISTINCT trace_id) FROM traces")
        return total, distinct


def all_loaded(data_dir: Path, ids: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        counts = trace_id_counts(data_dir)
        return all(counts[i] >= 1 for i in ids) and not spool_files(data_dir)

    return check


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (pids are not reused this quickly)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def worker_pids(gw: Gateway) -> list[int]:
    """The uvicorn worker processes (spawned children; not multiprocessing's resource tracker)."""
    assert gw.process is not None
    pids = []
    for child in psutil.Process(gw.process.pid).children():
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


# -- 1. the database is unavailable at run time ----------------------------------------------------


def test_store_outage_keeps_serving_and_spools_until_it_is_back(tmp_path, upstream, start_gateway):
    # Another process (a backup, a migration, a stuck admin shell) holds the database's write lock.
    _serves_through_and_loads_every_trace_once_after(tmp_path, upstream, start_gateway, store_locked, readable=True)


@pytest.mark.postgres_only  # a SQLite file cannot go down; its outage is the lock above
def test_a_database_that_goes_down_loses_no_trace_and_stores_none_twice(tmp_path, upstream, start_gateway):
    # The database refuses connections and every open one is cut (a restart, a network failure).
    _serves_through_and_loads_every_trace_once_after(tmp_path, upstream, start_gateway, store_outage, readable=False)


def _serves_through_and_loads_every_trace_once_after(tmp_path, upstream, start_gateway, outage, *, readable: bool):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    gw = start_gateway(config, data_dir=data_dir)

    with closing(store_at(data_dir / "lockgate.sqlite3")) as store, outage(store):
        ids: list[str] = []
        with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=15) as client:
            for i in range(50):
                r = client.post(CHAT, json=chat_body(f"during outage {i}"))
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == f"echo: during outage {i}"
                ids.append(r.headers["x-request-id"])
        assert len(set(ids)) == 50

        # The traces are on disk in the spool, and not (cannot be) in the database yet.
        assert spool_files(data_dir), "acknowledged traces must be spooled while the store is down"
        if readable:  # a database that is down cannot be asked
            assert not set(ids) & set(trace_id_counts(data_dir))

        # Let the loader hit the outage (its lock or connect timeout runs out) so its failure path is exercised.
        assert wait_until(lambda: "trace store unavailable" in gw.logs(), timeout_s=20), gw.logs()
        # Serving is still fine after the loader gave up once.
        with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=15) as client:
            r = client.post(CHAT, json=chat_body("still serving"))
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-request-id"])
        assert spool_files(data_dir)
    # the database is back

    assert wait_until(all_loaded(data_dir, set(ids)), timeout_s=10), (
        f"missing: {set(ids) - set(trace_id_counts(data_dir))}; spool: {spool_files(data_dir)}\n{gw.logs()}"
    )
    counts = trace_id_counts(data_dir)
    assert all(counts[i] == 1 for i in ids)
    total, distinct = trace_totals(data_dir)
    assert total == distinct == len(ids)


# -- 2. SIGKILL under load loses no acknowledged trace -------------------------------------------


def test_sigkill_under_load_loses_no_acknowledged_trace(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    # Far above the default 600 requests a minute, which this load would otherwise reach.
    key = create_key(data_dir, "load", "--rpm", "1000000", "--tpm", "100000000")
    gw = start_gateway(config, data_dir=data_dir, workers=2)
    assert wait_until(lambda: len(worker_pids(gw)) == 2, timeout_s=10), worker_pids(gw)

    acked: list[str] = []
    acked_lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = client.post(CHAT, json=chat_body(f"load {n}.{i}"))
                    except httpx.HTTPError:
                        return  # the gateway was killed under us: this request was never acknowledged
                    if r.status_code == 200:
                        with acked_lock:
                            acked.append(r.headers["x-request-id"])
                    else:
                        errors.append(AssertionError(f"unexpected {r.status_code}: {r.text}"))
                        return
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    gw.kill()  # mid-load: every process of the gateway, nothing gets to clean up
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "load threads did not finish"
    assert not errors, errors

    with acked_lock:
        acked_ids = set(acked)
    # Usually the kill leaves open segments (and acknowledged traces not yet in the store) behind;
    # printed, not asserted: under load the spool is empty only for instants, but it can be.
    unloaded = len(acked_ids - set(trace_id_counts(data_dir)))
    print(f"acknowledged {len(acked_ids)}, {unloaded} not in the store at the kill; spool: {spool_files(data_dir)}")
    assert len(acked_ids) == len(acked), "the gateway handed out a request id twice"
    assert len(acked_ids) > 50, f"only {len(acked_ids)} requests acknowledged: the test would prove little"

    # A new gateway on the same data folder recovers what the dead workers left in the spool.
    start_gateway(config, data_dir=data_dir, workers=2)
    assert wait_until(all_loaded(data_dir, acked_ids), timeout_s=10), (
        f"lost {len(acked_ids - set(trace_id_counts(data_dir)))} of {len(acked_ids)} acknowledged traces; "
        f"spool: {spool_files(data_dir)}"
    )
    total, distinct = trace_totals(data_dir)
    assert total == distinct >= len(acked_ids)


# -- 3. a graceful stop flushes the spool --------------------------------------------------------


def test_sigterm_flushes_the_spool(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    # A loader that would not run on its own for a minute: only the stop can load these traces.
    with config.open("a") as f:
        f.write("tracing:\n  flush_interval_s: 60\n")
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    gw = start_gateway(config, data_dir=data_dir, workers=2)

    ids = []
    with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
        for i in range(20):
            r = client.post(CHAT, json=chat_body(f"before stop {i}"))
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-request-id"])
    assert spool_files(data_dir)
    assert not set(ids) & set(trace_id_counts(data_dir))

    gw.stop()
    assert gw.process is not None and gw.process.returncode is not None
    counts = trace_id_counts(data_dir)
    assert all(counts[i] == 1 for i in ids), f"missing after stop: {set(ids) - set(counts)}\n{gw.logs()}"
    assert spool_files(data_dir) == []


# -- 4. per-key rate limits hold across worker processes -----------------------------------------


def test_key_rate_limit_is_shared_by_workers(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "rl", "--rpm", "30")
    gw = start_gateway(config, data_dir=data_dir, workers=2)
    assert wait_until(lambda: len(worker_pids(gw)) == 2, timeout_s=10), worker_pids(gw)

    # A keep-alive connection stays with the worker that accepted it, and /readyz names that worker.
    # Open connections until both workers hold some, so the limit is exercised across processes.
    clients: list[tuple[int, httpx.Client]] = []
    try:
        for _ in range(64):
            client = httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10,
                                  limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            clients.append((client.get("/readyz").json()["pid"], client))
            if len({pid for pid, _ in clients}) >= 2 and len(clients) >= 6:
                break
        pids = {pid for pid, _ in clients}
        assert pids == set(worker_pids(gw)), f"could not reach both workers over {len(clients)} connections"

        results: list[tuple[int, int, str | None]] = []  # (worker pid, status, retry-after)
        results_lock = threading.Lock()
        per_client = 60 // len(clients) + 1
        remaining = [60]

        def fire(pid: int, client: httpx.Client) -> None:
            for _ in range(per_client):
                with results_lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                r = client.post(CHAT, json=chat_body("limited"))
                with results_lock:
                    results.append((pid, r.status_code, r.headers.get("retry-after")))

        started = time.time()
        threads = [threading.Thread(target=fire, args=c, daemon=True) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        elapsed = time.time() - started
        assert not any(t.is_alive() for t in threads)
    finally:
        for _, client in clients:
            client.close()

    assert len(results) == 60
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    # GCRA at 30/min: a burst of 30, then one more every 2 s of the time the burst took.
    refill = int(elapsed // 2.0)
    assert 30 <= statuses[200] <= 30 + refill, (statuses, elapsed)
    for _, status, retry_after in results:
        if status == 429:
            assert retry_after is not None and int(retry_after) >= 1
    served_by = Counter(pid for pid, _, _ in results)
    print(f"statuses {dict(statuses)} in {elapsed:.2f}s; requests per worker {dict(served_by)}")
    assert set(served_by) == pids, served_by  # both workers took part in the decisions


# -- 5. the trace CLI ----------------------------------------------------------------------------


def test_traces_cli_prints_the_trace_with_its_tokens(tmp_path, echo_gateway):
    gw, key = echo_gateway
    data_dir = gw.data_dir
    trace_id = "req_cli_trace_0001"
    r = httpx.post(gw.api_url + "/chat/completions", headers={**auth(key), "x-request-id": trace_id},
                   json=chat_body("count these four words"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == trace_id
    usage = r.json()["usage"]
    assert wait_until(lambda: trace_id in trace_id_counts(data_dir), timeout_s=10)

    tail = run_cli("traces", "tail", "-n", "5", data_dir=data_dir).stdout
    line = next((ln for ln in tail.splitlines() if trace_id in ln), None)
    assert line is not None, tail
    assert "echo@1" in line and " 200 " in line and " ok " in line
    assert line.split()[-1] == str(usage["prompt_tokens"] + usage["completion_tokens"])

    shown = json.loads(run_cli("traces", "show", trace_id, data_dir=data_dir).stdout)
    assert shown["trace_id"] == trace_id
    assert shown["status"] == 200 and shown["outcome"] == "ok"
    assert shown["route"] == "echo" and shown["release"] == "echo@1"
    assert shown["prompt_tokens"] == usage["prompt_tokens"]
    assert shown["completion_tokens"] == usage["completion_tokens"]
    assert shown["output"] == "echo: count these four words"

    missing = run_cli("traces", "show", "req_does_not_exist", data_dir=data_dir, check=False)
    assert missing.returncode == 1 and "no trace" in missing.stderr


# -- 6. orphan recovery, in process --------------------------------------------------------------


def _trace(i: int) -> dict:
    return {"trace_id": f"orphan-{i}", "ts": 1_700_000_000.0 + i, "route": "echo", "release": "echo@1",
            "key_id": None, "status": 200, "outcome": "ok", "latency_ms": 1.0}


def _write_orphan(path: Path, n: int) -> None:
    lines = b"".join(json.dumps(_trace(i)).encode() + b"\n" for i in range(n))
    # The last write was cut short by the kill: no newline, half a JSON object.
    path.write_bytes(lines + json.dumps(_trace(n)).encode()[:25])


def test_orphan_segments_of_a_dead_process_are_recovered_once(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    pid = dead_pid()
    orphan = spool / f"trace-{pid}-00000001.open"
    _write_orphan(orphan, 3)
    copy = tmp_path / "orphan-copy"
    shutil.copy(orphan, copy)

    journal = TraceJournal(spool, store)
    journal.recover_orphans()
    journal.flush()
    assert store.count_traces() == 3  # the truncated fourth line is skipped
    assert {t["trace_id"] for t in store.recent_traces(limit=10)} == {"orphan-0", "orphan-1", "orphan-2"}
    assert list(spool.iterdir()) == []

    # The same segment again, this time as a dead loader left it: loading twice adds nothing.
    shutil.copy(copy, spool / f"trace-{pid}-00000001.loading-{pid}")
    journal.recover_orphans()
    journal.flush()
    assert store.count_traces() == 3
    assert list(spool.iterdir()) == []

    # Segments of live processes (this one included) are left alone.
    live = spool / f"trace-{os.getppid()}-00000001.open"
    shutil.copy(copy, live)
    journal.recover_orphans()
    journal.flush()
    assert live.exists()
    store.close()


def test_a_running_loader_recovers_segments_of_a_process_that_dies_later(tmp_path):
    """Orphans are not only looked for at start: a gateway that outlives another one loads its leftovers."""
    spool = tmp_path / "spool"
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    journal = TraceJournal(spool, store, flush_interval_s=0.05)
    journal.start()
    try:
        time.sleep(0.2)  # the start-up recovery pass is over
        _write_orphan(spool / f"trace-{dead_pid()}-00000007.open", 3)
        assert wait_until(lambda: store.count_traces() == 3 and not list(spool.iterdir()), timeout_s=5), (
            list(spool.iterdir())
        )
    finally:
        journal.stop()
        store.close()


def test_segments_of_a_dead_process_with_the_same_pid_are_neither_overwritten_nor_stranded(tmp_path):
    """Pids repeat: a restarted container gives its workers the pids the killed ones had."""
    spool = tmp_path / "spool"
    spool.mkdir()
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    me = os.getpid()
    # The predecessor with our pid sealed segment 1 while the store was down, was killed while
    # writing segment 2, and while loading another process's segment.
    (spool / f"trace-{me}-00000001.sealed").write_bytes(
        b"".join(json.dumps(_trace(i)).encode() + b"\n" for i in (10, 11)))
    _write_orphan(spool / f"trace-{me}-00000002.open", 2)
    (spool / f"trace-{dead_pid()}-00000005.loading-{me}").write_bytes(json.dumps(_trace(20)).encode() + b"\n")

    journal = TraceJournal(spool, store)
    journal.recover_orphans()
    journal.append(_trace(30))
    journal.flush()
    ids = {t["trace_id"] for t in store.recent_traces(limit=50)}
    assert ids == {"orphan-0", "orphan-1", "orphan-10", "orphan-11", "orphan-20", "orphan-30"}
    assert list(spool.iterdir()) == []
    store.close()
