"""The pure parts of bench/peers.py: the sustained verdict, the max-rate search and the ratios.

No gateway, no LiteLLM: the search is driven by a predicate standing in for "the gateway sustains this
load", and the verdict by hand-made step results shaped like bench/loadgen.py's.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import peers  # noqa: E402

pytestmark = pytest.mark.store_free  # never opens a store (tests/conftest.py)


def step(
    rate: float, *, achieved: float | None = None, ok: int = 1000, errors: int = 0, p99: float = 5.0
) -> dict[str, Any]:
    return {"offered_rps": rate, "achieved_rps": rate if achieved is None else achieved, "ok": ok,
            "error_count": errors, "p99": p99}


# --- verdict ---------------------------------------------------------------------------------------


def test_sustained_when_carried_fast_and_clean() -> None:
    assert peers.sustained(step(500, achieved=480, errors=9, ok=1991, p99=49.9)) == (True, "")


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (step(500, achieved=470), "achieved 470/s < 95%"),
        (step(500, ok=990, errors=10), "errors 10 of 1000"),
        (step(500, p99=50.0), "p99 50.0 ms >= 50"),
        (step(500, ok=0, errors=0, p99=math.nan), "errors 0 of 0, p99 n/a ms >= 50"),
    ],
)
def test_not_sustained_says_why(result: dict[str, Any], reason: str) -> None:
    ok, why = peers.sustained(result)
    assert not ok
    assert reason in why


# --- search ----------------------------------------------------------------------------------------


def run_search(threshold: float, **kw: int) -> tuple[int, list[int]]:
    tried: list[int] = []

    def passes(rate: int) -> bool:
        tried.append(rate)
        return rate <= threshold

    return peers.search_max_rate(passes, **kw), tried


def test_search_doubles_then_bisects_to_within_ten_percent() -> None:
    best, tried = run_search(1130)
    assert tried[:5] == [100, 200, 400, 800, 1600]
    assert best <= 1130
    assert 1130 - best <= max(25, best // 10)  # within the resolution of the true limit
    assert tried[5] == 1200  # the first bisection step, halfway between 800 and 1600


def test_search_below_start_halves_down() -> None:
    best, tried = run_search(60)
    assert tried[:2] == [100, 50]
    assert best == 60  # below 100 the bisection works in steps of 5: 75 fails, 60 passes, 70 and 65 fail
    assert tried[2:] == [75, 60, 70, 65]


def test_search_finds_nothing_when_even_the_floor_fails() -> None:
    best, tried = run_search(9)
    assert best == 0
    assert tried == [100, 50, 25, 10]


def test_search_stops_at_the_cap() -> None:
    best, tried = run_search(10_000, cap=1000)
    assert best == 1000
    assert tried == [100, 200, 400, 800, 1000]


def test_search_rates_stay_on_the_grain() -> None:
    _, tried = run_search(777)
    assert all(rate % 25 == 0 for rate in tried)
    _, tried = run_search(33)
    assert all(rate % 5 == 0 for rate in tried)
    assert len(tried) == len(set(tried))  # no load is tried twice


# --- ratios ----------------------------------------------------------------------------------------


def test_throughput_ratio_is_lockgate_over_litellm() -> None:
    assert peers.throughput_ratio(900, 75) == pytest.approx(12.0)
    assert peers.throughput_ratio(900, 0) == math.inf
    assert math.isnan(peers.throughput_ratio(0, 0))


def test_p99_ratio_is_litellm_over_lockgate_with_a_floor() -> None:
    assert peers.p99_ratio(400.0, 8.0) == pytest.approx(50.0)
    # Noise can make Lockgate's added p99 zero or negative: the floor keeps the ratio finite and positive.
    assert peers.p99_ratio(400.0, -0.3) == pytest.approx(400.0 / peers.P99_FLOOR_MS)
