"""GCRA decisions with a controlled clock: bursts, refill, retry-after, all-or-nothing charges.

Every decision test runs against both implementations of the one RateLimiter interface: the SQLite
file one machine's workers share, and the Lua script on the shared Redis that replicas share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from lockgate.cluster.ratelimit import RedisRateLimiter
from lockgate.gateway.ratelimit import Charge, Decision, RateLimiter, SqliteRateLimiter, retry_after_header
from tests.redis_helpers import SHARED_REDIS_URL, target

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture(params=["sqlite", "redis"])
def make_limiter(request, tmp_path: Path, clock) -> Callable[[], RateLimiter]:
    """New limiters over one shared state (the file, or the Redis prefix), as separate workers or replicas have."""
    if request.param == "sqlite":
        return lambda: SqliteRateLimiter(tmp_path / "rl.sqlite3", clock=lambda: clock[0])
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisRateLimiter(target(SHARED_REDIS_URL, prefix), clock=lambda: clock[0])


@pytest.fixture
def limiter(make_limiter) -> RateLimiter:
    return make_limiter()


def acquire(limiter: RateLimiter, bucket: str, cost: float, per_minute: int) -> Decision:
    return asyncio.run(limiter.acquire_all([Charge(bucket, cost, per_minute)]))


def test_a_full_minute_may_be_spent_at_once_then_refills_smoothly(limiter, clock):
    assert all(acquire(limiter, "k", 1, 6).allowed for _ in range(6))
    refused = acquire(limiter, "k", 1, 6)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(10.0)
    clock[0] += 10.0  # one request's worth (60 s / 6)
    assert acquire(limiter, "k", 1, 6).allowed
    assert not acquire(limiter, "k", 1, 6).allowed


def test_buckets_are_independent(limiter):
    assert acquire(limiter, "a", 1, 1).allowed
    assert not acquire(limiter, "a", 1, 1).allowed
    assert acquire(limiter, "b", 1, 1).allowed


def test_costs_larger_than_the_limit_are_refused(limiter):
    assert not acquire(limiter, "tok", 1001, 1000).allowed
    assert acquire(limiter, "tok", 1000, 1000).allowed


def test_all_or_nothing_a_refusal_charges_no_other_bucket(limiter):
    assert acquire(limiter, "route", 1, 1).allowed  # route is now full
    decision = asyncio.run(limiter.acquire_all([Charge("key", 1, 10, "key rpm"), Charge("route", 1, 1, "route rpm")]))
    assert not decision.allowed and decision.refused_by is not None and decision.refused_by.bucket == "route"
    assert decision.refused_by.what == "route rpm"
    # The key bucket was not charged for the refused request: all ten remain.
    assert all(acquire(limiter, "key", 1, 10).allowed for _ in range(10))
    assert not acquire(limiter, "key", 1, 10).allowed


def test_charges_after_the_fact_can_put_a_bucket_in_debt(limiter, clock):
    asyncio.run(limiter.charge_all([Charge("tok", 2000, 1000)]))  # two minutes' worth
    refused = acquire(limiter, "tok", 1, 1000)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(60.06, abs=0.01)
    clock[0] += 61
    assert acquire(limiter, "tok", 1, 1000).allowed


def test_state_is_shared_by_separate_limiters(make_limiter):
    """Worker processes (SQLite) or replicas (Redis) each have their own RateLimiter over one state."""
    a, b = make_limiter(), make_limiter()
    assert acquire(a, "k", 1, 2).allowed
    assert acquire(b, "k", 1, 2).allowed
    assert not acquire(a, "k", 1, 2).allowed


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


def test_a_broken_limiter_file_lets_requests_through_and_counts_it(tmp_path: Path):
    """The limiter protects capacity; its own failure must not take the gateway down with it."""
    from lockgate.observe.metrics import RATELIMIT_ERRORS

    path = tmp_path / "rl.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    before = RATELIMIT_ERRORS._value.get()
    limiter = SqliteRateLimiter(path)
    assert asyncio.run(limiter.acquire_all([Charge("k", 1, 1)])).allowed
    asyncio.run(limiter.charge_all([Charge("k", 5, 1)]))
    assert RATELIMIT_ERRORS._value.get() == before + 2
