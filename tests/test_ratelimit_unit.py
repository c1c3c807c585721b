"""GCRA decisions with a controlled clock: bursts, refill, retry-after, all-or-nothing charges."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.gateway.ratelimit import Charge, RateLimiter, retry_after_header

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def limiter(tmp_path: Path, clock):
    return RateLimiter(tmp_path / "rl.sqlite3", clock=lambda: clock[0])


def test_a_full_minute_may_be_spent_at_once_then_refills_smoothly(limiter, clock):
    assert all(limiter.acquire("k", cost=1, per_minute=6).allowed for _ in range(6))
    refused = limiter.acquire("k", cost=1, per_minute=6)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(10.0)
    clock[0] += 10.0  # one request's worth (60 s / 6)
    assert limiter.acquire("k", cost=1, per_minute=6).allowed
    assert not limiter.acquire("k", cost=1, per_minute=6).allowed


def test_buckets_are_independent(limiter):
    assert limiter.acquire("a", cost=1, per_minute=1).allowed
    assert not limiter.acquire("a", cost=1, per_minute=1).allowed
    assert limiter.acquire("b", cost=1, per_minute=1).allowed


def test_costs_larger_than_the_limit_are_refused(limiter):
    assert not limiter.acquire("tok", cost=1001, per_minute=1000).allowed
    assert limiter.acquire("tok", cost=1000, per_minute=1000).allowed


def test_all_or_nothing_a_refusal_charges_no_other_bucket(limiter):
    assert limiter.acquire("route", cost=1, per_minute=1).allowed  # route is now full
    decision = limiter.acquire_all([Charge("key", 1, 10, "key rpm"), Charge("route", 1, 1, "route rpm")])
    assert not decision.allowed and decision.refused_by is not None and decision.refused_by.bucket == "route"
    # The key bucket was not charged for the refused request: all ten remain.
    assert all(limiter.acquire("key", cost=1, per_minute=10).allowed for _ in range(10))
    assert not limiter.acquire("key", cost=1, per_minute=10).allowed


def test_charges_after_the_fact_can_put_a_bucket_in_debt(limiter, clock):
    limiter.charge_all([Charge("tok", 2000, 1000)])  # two minutes' worth
    refused = limiter.acquire("tok", cost=1, per_minute=1000)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(60.06, abs=0.01)
    clock[0] += 61
    assert limiter.acquire("tok", cost=1, per_minute=1000).allowed


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"


def test_state_is_shared_through_the_file_by_separate_limiters(tmp_path: Path, clock):
    """Worker processes each have their own RateLimiter over one file."""
    a = RateLimiter(tmp_path / "shared.sqlite3", clock=lambda: clock[0])
    b = RateLimiter(tmp_path / "shared.sqlite3", clock=lambda: clock[0])
    assert a.acquire("k", cost=1, per_minute=2).allowed
    assert b.acquire("k", cost=1, per_minute=2).allowed
    assert not a.acquire("k", cost=1, per_minute=2).allowed


def test_a_broken_limiter_file_lets_requests_through_and_counts_it(tmp_path: Path):
    """The limiter protects capacity; its own failure must not take the gateway down with it."""
    from lockgate.observe.metrics import RATELIMIT_ERRORS

    path = tmp_path / "rl.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    before = RATELIMIT_ERRORS._value.get()
    limiter = RateLimiter(path)
    assert limiter.acquire_all([Charge("k", 1, 1)]).allowed
    limiter.charge_all([Charge("k", 5, 1)])
    assert RATELIMIT_ERRORS._value.get() == before + 2
