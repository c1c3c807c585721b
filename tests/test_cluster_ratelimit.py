"""The Redis rate limiter's own duties: server time, expiring keys, the cached script, and what it
does when Redis is unreachable or goes away (redis.on_failure: open or closed)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from lockgate.cluster.ratelimit import RedisRateLimiter
from lockgate.gateway.ratelimit import Charge
from lockgate.observe.metrics import RATELIMIT_ERRORS
from tests.redis_helpers import SHARED_REDIS_URL, closed_port_url, target

pytestmark = pytest.mark.store_free  # never opens a store (tests/conftest.py)


def test_limits_use_the_redis_clock_and_keys_expire_with_their_window(redis_prefix):
    """No clock passed: the script reads the server's TIME, so replicas with skewed clocks agree."""
    a = RedisRateLimiter(target(SHARED_REDIS_URL, redis_prefix))
    b = RedisRateLimiter(target(SHARED_REDIS_URL, redis_prefix))

    async def run() -> list[bool]:
        return [(await limiter.acquire_all([Charge("k", 1, 3)])).allowed for limiter in (a, b, a, b)]

    assert asyncio.run(run()) == [True, True, True, False]
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    ttl_ms = client.pttl(f"{redis_prefix}:rl:k")
    # Three requests of a 3-per-minute limit: the bucket is a full minute ahead, and expires when that has passed.
    assert 55_000 < ttl_ms <= 60_001
    client.close()


def test_a_flushed_script_cache_is_refilled(private_redis):
    """After SCRIPT FLUSH (or a Redis restart) EVALSHA answers NOSCRIPT; the limiter sends the script again."""
    limiter = RedisRateLimiter(target(private_redis.url, "t"))

    async def run() -> list[bool]:
        first = (await limiter.acquire_all([Charge("k", 1, 2)])).allowed
        redis.Redis.from_url(private_redis.url).script_flush()
        second = (await limiter.acquire_all([Charge("k", 1, 2)])).allowed
        third = (await limiter.acquire_all([Charge("k", 1, 2)])).allowed
        return [first, second, third]

    before = RATELIMIT_ERRORS._value.get()
    assert asyncio.run(run()) == [True, True, False]
    assert RATELIMIT_ERRORS._value.get() == before


def test_unreachable_redis_fails_open_and_is_counted():
    limiter = RedisRateLimiter(target(closed_port_url(), "t", on_failure="open"))
    before = RATELIMIT_ERRORS._value.get()
    decision = asyncio.run(limiter.acquire_all([Charge("k", 1, 1)]))
    assert decision.allowed and not decision.unavailable
    asyncio.run(limiter.charge_all([Charge("k", 5, 1)]))  # never raises either
    assert RATELIMIT_ERRORS._value.get() == before + 2


def test_unreachable_redis_fails_closed_when_configured():
    limiter = RedisRateLimiter(target(closed_port_url(), "t", on_failure="closed"))
    decision = asyncio.run(limiter.acquire_all([Charge("k", 1, 1000)]))
    assert not decision.allowed and decision.unavailable and decision.refused_by is None


def test_redis_going_away_mid_run_then_coming_back(private_redis):
    open_limiter = RedisRateLimiter(target(private_redis.url, "t", on_failure="open"))
    closed_limiter = RedisRateLimiter(target(private_redis.url, "t", on_failure="closed"))
    charge = [Charge("k", 1, 1000)]

    async def run() -> None:
        assert (await open_limiter.acquire_all(charge)).allowed
        assert (await closed_limiter.acquire_all(charge)).allowed
        private_redis.kill()
        assert (await open_limiter.acquire_all(charge)).allowed
        refused = await closed_limiter.acquire_all(charge)
        assert not refused.allowed and refused.unavailable
        private_redis.start()  # same port, empty: the limiter reconnects once its pause after a failure is over
        deadline = time.monotonic() + 10
        while not (decision := await closed_limiter.acquire_all(charge)).allowed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert decision.allowed and not decision.unavailable

    asyncio.run(run())
