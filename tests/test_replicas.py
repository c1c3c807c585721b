"""Three `lockgate serve` replicas on different ports, sharing one PostgreSQL database and one Redis, as a
load balancer would see them: limits hold across replicas, a rollback through one is obeyed by the
others, every acknowledged request is traced exactly once, and a replica killed with SIGKILL loses
nothing it acknowledged.

Each replica has its own data folder (its journal of traces not yet stored, its local files); what they
share, they share through PostgreSQL and Redis alone. The replicas re-read route state from the database
only once a minute here (`server.state_poll_s: 60`), so a change that reaches them within seconds can
only have come through Redis's change notices. bench/replicas.py measures how fast.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lockgate.audit.verify import verify_store
from lockgate.store import open_url
from tests.harness import Gateway, create_key, create_pg_database, drop_pg_database, free_port
from tests.http_traffic import chat, wait_for
from tests.redis_helpers import SHARED_REDIS_URL
from tests.test_rollouts_http import write_rollout_config

# A property of PostgreSQL and Redis together: run once, in the PostgreSQL pass.
pytestmark = pytest.mark.postgres_only

ROUTE_LIMIT = 120  # requests per minute for the route, across every replica
POLL_S = 60


@dataclass
class Cluster:
    replicas: list[Gateway]
    database_url: str
    config: Path
    app_key: str
    deployer_key: str

    def env(self) -> dict[str, str]:
        return {"LOCKGATE_DATABASE_URL": self.database_url}

    def admin(self, replica: Gateway, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(method, replica.base_url + "/admin/v1" + path, json=body, timeout=30,
                             headers={"authorization": f"Bearer {self.deployer_key}"})


@pytest.fixture
def cluster(tmp_path: Path, upstream, redis_prefix: str) -> Iterator[Cluster]:
    database_url = create_pg_database()
    store = open_url(database_url)
    store.migrate()
    store.close()
    plans = "      default:\n        steps: [{canary: {weight: 100}}, {pause: {}}, {promote: {}}]"
    # One upstream for both releases: the release that answered is in x-lockgate-release.
    config = write_rollout_config(tmp_path / "lockgate.yaml", upstream.base_url, upstream.base_url, plans,
                                  extra_route=f"    rate_limit: {{requests_per_minute: {ROUTE_LIMIT}}}")
    config.write_text(config.read_text() + f"server:\n  state_poll_s: {POLL_S}\n"
                      f"redis:\n  url: {SHARED_REDIS_URL}\n  prefix: {redis_prefix}\n")
    env = {"LOCKGATE_DATABASE_URL": database_url}
    app_key = create_key(tmp_path / "r0", "app", env=env)
    deployer_key = create_key(tmp_path / "r0", "dee", "--role", "deployer", env=env)
    replicas = [Gateway(tmp_path / f"r{i}", config, free_port(), env=env).start() for i in range(3)]
    try:
        yield Cluster(replicas, database_url, config, app_key, deployer_key)
    finally:
        for replica in replicas:
            replica.stop()
        drop_pg_database(database_url)


def test_a_route_limit_holds_across_replicas(cluster: Cluster) -> None:
    statuses: list[int] = []
    lock = threading.Lock()
    first_last: list[float] = []

    def send(replica: Gateway, n: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(n):
                r = client.post(replica.api_url + "/chat/completions",
                                headers={"authorization": f"Bearer {cluster.app_key}"},
                                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                with lock:
                    statuses.append(r.status_code)
                    first_last.append(time.time())

    threads = [threading.Thread(target=send, args=(replica, ROUTE_LIMIT)) for replica in cluster.replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 429}, statuses
    allowed = statuses.count(200)
    # GCRA: a full minute's allowance at once, then one more every 60/limit seconds while the test ran.
    elapsed = max(first_last) - min(first_last)
    expected = ROUTE_LIMIT + elapsed * ROUTE_LIMIT / 60
    assert abs(allowed - expected) <= 0.05 * expected, (allowed, expected, elapsed)


def test_a_rollback_through_one_replica_is_obeyed_by_the_others(cluster: Cluster) -> None:
    a, *others = cluster.replicas

    def serving() -> list[str]:
        return [chat(r, cluster.app_key).headers["x-lockgate-release"] for r in cluster.replicas]

    assert serving() == ["echo@1"] * 3
    started = cluster.admin(a, "post", "/rollouts/echo/start", {"candidate": "v2"})
    assert started.status_code == 200, started.text
    # Within seconds, not the minute a poll of the database would take: the notice came through Redis.
    wait_for(lambda: serving() == ["echo@2"] * 3, timeout_s=POLL_S / 4, interval_s=0.05)

    rolled_back = cluster.admin(a, "post", "/rollouts/echo/rollback", {"reason": "replica drill"})
    assert rolled_back.status_code == 200, rolled_back.text
    assert rolled_back.json()["rollout"]["status"] == "rolled_back"
    for replica in others:
        wait_for(lambda r=replica: chat(r, cluster.app_key).headers["x-lockgate-release"] == "echo@1",
                 timeout_s=POLL_S / 4, interval_s=0.05)
    assert serving() == ["echo@1"] * 3


def test_every_acknowledged_request_is_traced_once_even_through_a_sigkill(cluster: Cluster) -> None:
    sent: set[str] = set()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    victim = cluster.replicas[2]

    def send(replica: Gateway) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                request_id = f"rep-{uuid.uuid4().hex}"
                with lock:
                    sent.add(request_id)
                try:
                    r = client.post(replica.api_url + "/chat/completions",
                                    headers={"authorization": f"Bearer {cluster.app_key}", "x-request-id": request_id},
                                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                except httpx.HTTPError:
                    if replica is victim:
                        return  # killed mid-request: not acknowledged, so it may or may not be traced
                    raise
                if r.status_code == 200:
                    assert r.headers["x-request-id"] == request_id
                    with lock:
                        acknowledged.add(request_id)

    threads = [threading.Thread(target=send, args=(replica,)) for replica in cluster.replicas for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acknowledged) >= 60, timeout_s=60, interval_s=0.05)
    victim.kill()  # SIGKILL to the whole process tree: its journal's unloaded tail stays on disk
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    victim_acknowledged = len(acknowledged)
    victim.start()  # the same data folder: the restarted replica loads what its journal holds

    store = open_url(cluster.database_url)
    try:
        def stored_ids() -> set[str]:
            return {t["trace_id"] for t in store.recent_traces(limit=100_000, route="echo")}

        wait_for(lambda: acknowledged <= stored_ids(), timeout_s=60, interval_s=0.2)
        stored = stored_ids()
        assert acknowledged <= stored, f"lost {len(acknowledged - stored)} of {victim_acknowledged} acknowledged"
        assert stored <= sent, "traces of requests nobody sent"
        assert store.count_traces() == len(stored), "a trace stored twice"
        verification = verify_store(store)
        assert verification.ok, verification.problems
        assert verification.trace_links == len(stored)
    finally:
        store.close()
