"""Gateways sharing one Redis, through real `lockgate serve` processes: limits hold across replicas,
their live counts add up, and an unreachable Redis fails open or closed as configured.

The replicas here have separate data folders (so separate SQLite stores and limit files): whatever
they share, they share through Redis alone.
"""

from __future__ import annotations

import time

import httpx

from lockgate.cluster.live import RedisLiveWindows
from tests.harness import create_key, store_at, write_config
from tests.http_traffic import chat
from tests.redis_helpers import SHARED_REDIS_URL, closed_port_url, target


def config_with_redis(path, upstream_url: str, redis_yaml: str, route_extra: str = ""):
    config = write_config(path, upstream_url, route_extra=route_extra)
    config.write_text(config.read_text() + "redis:\n" + redis_yaml)
    return config


def replica(tmp_path, name: str, config, start_gateway):
    data_dir = tmp_path / name
    key = create_key(data_dir)
    return start_gateway(config, data_dir=data_dir), key


def test_replicas_share_a_route_limit_and_their_live_counts_add_up(tmp_path, upstream, start_gateway, redis_prefix):
    config = config_with_redis(tmp_path / "lockgate.yaml", upstream.base_url,
                               f"  url: {SHARED_REDIS_URL}\n  prefix: {redis_prefix}\n",
                               route_extra="    rate_limit: {requests_per_minute: 6}")
    (a, key_a), (b, key_b) = (replica(tmp_path, name, config, start_gateway) for name in ("a", "b"))
    started = time.time()
    statuses = {"a": [], "b": []}
    for _ in range(6):
        statuses["a"].append(chat(a, key_a).status_code)
        statuses["b"].append(chat(b, key_b).status_code)
    allowed = sum(s == 200 for s in statuses["a"] + statuses["b"])
    # Six a minute for the route, whichever replica answers; a seventh only if the loop took over 10 s
    # (GCRA refills one request every 60/6 s).
    assert allowed in (6, 7), statuses
    assert 429 in statuses["a"] and 429 in statuses["b"], statuses
    refused = chat(a, key_a)
    assert refused.status_code == 429 and "6 requests per minute for this route" in refused.json()["error"]["message"]

    # Each replica counted its own answered requests in Redis; read together they are all of them.
    live = RedisLiveWindows(target(SHARED_REDIS_URL, redis_prefix), store_at(tmp_path / "unused.sqlite3"))
    deadline = time.monotonic() + 10
    while True:
        windows = live.release_window("echo", started - 1)
        if sum(w.requests for w in windows) >= allowed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(w.release, w.shadow, w.requests, w.failed) for w in windows] == [("echo@1", False, allowed, 0)]


def test_unreachable_redis_fails_closed_with_a_clear_503(tmp_path, upstream, start_gateway):
    config = config_with_redis(tmp_path / "lockgate.yaml", upstream.base_url,
                               f"  url: {closed_port_url()}\n  on_failure: closed\n")
    gw, key = replica(tmp_path, "data", config, start_gateway)
    r = chat(gw, key)
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "rate_limiter_unavailable" and error["type"] == "server_error"
    assert "rate limiter is unavailable" in error["message"] and "redis.on_failure" in error["message"]
    assert r.headers["retry-after"] == "1"


def test_unreachable_redis_fails_open_and_counts_it(tmp_path, upstream, start_gateway):
    config = config_with_redis(tmp_path / "lockgate.yaml", upstream.base_url, f"  url: {closed_port_url()}\n")
    gw, key = replica(tmp_path, "data", config, start_gateway)
    assert [chat(gw, key).status_code for _ in range(3)] == [200, 200, 200]
    metrics = httpx.get(gw.base_url + "/metrics", timeout=10).text
    errors = [line for line in metrics.splitlines() if line.startswith("lockgate_ratelimit_errors_total ")]
    assert errors and float(errors[0].split()[1]) >= 3


def test_redis_going_away_under_a_serving_gateway_and_coming_back(tmp_path, upstream, start_gateway, private_redis):
    config = config_with_redis(tmp_path / "lockgate.yaml", upstream.base_url,
                               f"  url: {private_redis.url}\n  on_failure: closed\n")
    gw, key = replica(tmp_path, "data", config, start_gateway)
    assert chat(gw, key).status_code == 200
    private_redis.kill()
    r = chat(gw, key)
    assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limiter_unavailable"
    private_redis.start()
    deadline = time.monotonic() + 15
    while (status := chat(gw, key).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200
    assert httpx.get(gw.base_url + "/readyz", timeout=10).status_code == 200
