"""Candidate against stable on live traffic: one Measurement per check, each with one Verdict.

Rates (errors, guard violations, grounding failures, bad ratings, failed live checks) are rare, so
they are compared with a Bayesian beta-binomial model rather than a normal approximation: with a
uniform prior, the posterior of each release's rate is Beta(1 + k, 1 + n - k), and the verdict
rests on P(candidate rate > stable rate + tolerance), estimated from a fixed-seed Monte Carlo
sample (deterministic, so the same counts always give the same verdict):

    P >= 0.95                         Failed: the candidate is worse beyond what the plan tolerates
    P <= 0.20                         Successful
    otherwise, or fewer than the minimum samples on either side: Inconclusive

p95 latency is compared as candidate <= stable * max_ratio + slack_ms, once both sides have the
minimum sample. Absolute limits (`rollback_when`) look at the candidate alone, over a trailing
window, and only trip with at least their own minimum sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lockgate.config.plans import RATE_METRICS, AbsoluteLimit, MetricCheck, RolloutPlan
from lockgate.evals.assertions import evaluate
from lockgate.observe.windows import LiveWindows
from lockgate.rollout.verdicts import Verdict, combine
from lockgate.store import ReleaseWindow, Store, StoreUnavailable

FAIL_PROBABILITY = 0.95
PASS_PROBABILITY = 0.20
MONTE_CARLO_DRAWS = 20_000
# Ratings and sampled checks are sparser than requests: they need this share of the request minimum.
SPARSE_SHARE = 0.2
SPARSE_FLOOR = 10

# (bad, total) per release id, e.g. thumbs-down over ratings, in a window.
CountsSource = Callable[[str, float, float], dict[str, tuple[int, int]]]


@dataclass(frozen=True)
class Measurement:
    metric: str
    verdict: Verdict
    required: bool
    candidate: float | None
    stable: float | None
    candidate_n: int
    stable_n: int
    rule: str
    probability_worse: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        return d


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    measurements: tuple[Measurement, ...]
    since: float
    until: float

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "since": self.since, "until": self.until,
                "measurements": [m.as_dict() for m in self.measurements]}


@dataclass(frozen=True)
class Breach:
    metric: str
    value: float
    above: float
    samples: int
    window_s: float

    def describe(self) -> str:
        shown = f"{self.value:.1%}" if self.metric in RATE_METRICS else f"{self.value:.0f} ms"
        limit = f"{self.above:.1%}" if self.metric in RATE_METRICS else f"{self.above:.0f} ms"
        return f"candidate {self.metric} {shown} > {limit} over the last {self.window_s:g}s ({self.samples} requests)"


def probability_worse(bad_c: int, n_c: int, bad_s: int, n_s: int, tolerance: float) -> float:
    """P(candidate rate > stable rate + tolerance) under Beta(1 + bad, 1 + n - bad) posteriors."""
    rng = np.random.default_rng(20261122)
    candidate = rng.beta(1 + bad_c, 1 + n_c - bad_c, MONTE_CARLO_DRAWS)
    stable = rng.beta(1 + bad_s, 1 + n_s - bad_s, MONTE_CARLO_DRAWS)
    return float(np.mean(candidate > stable + tolerance))


def compare_rates(metric: str, bad_c: int, n_c: int, bad_s: int, n_s: int, *, tolerance: float,
                  min_samples: int, required: bool) -> Measurement:
    rule = f"P(candidate > stable + {tolerance:g}) < {FAIL_PROBABILITY:g}"
    rate_c = bad_c / n_c if n_c else None
    rate_s = bad_s / n_s if n_s else None
    if n_c < min_samples or n_s < min_samples:
        return Measurement(metric, Verdict.INCONCLUSIVE, required, rate_c, rate_s, n_c, n_s, rule,
                           note=f"too little data: {n_c} candidate and {n_s} stable samples, {min_samples} needed each")
    p = probability_worse(bad_c, n_c, bad_s, n_s, tolerance)
    if p >= FAIL_PROBABILITY:
        verdict, note = Verdict.FAILED, f"candidate worse beyond tolerance with probability {p:.3f}"
    elif p <= PASS_PROBABILITY:
        verdict, note = Verdict.SUCCESSFUL, f"candidate worse beyond tolerance with probability only {p:.3f}"
    else:
        verdict, note = Verdict.INCONCLUSIVE, f"not yet clear (probability worse {p:.3f})"
    return Measurement(metric, verdict, required, rate_c, rate_s, n_c, n_s, rule, p, note)


def p95(latencies: Sequence[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def compare_latency(candidate: Sequence[float], stable: Sequence[float], check: MetricCheck, *,
                    min_samples: int) -> Measurement:
    rule = f"candidate p95 <= stable p95 x {check.max_ratio:g} + {check.slack_ms:g} ms"
    c, s = p95(candidate), p95(stable)
    required = check.is_required()
    if len(candidate) < min_samples or len(stable) < min_samples or c is None or s is None:
        return Measurement("p95_latency_ms", Verdict.INCONCLUSIVE, required, c, s, len(candidate), len(stable), rule,
                           note=f"too little data: {min_samples} answered requests needed on each side")
    limit = s * check.max_ratio + check.slack_ms
    ok = c <= limit
    return Measurement("p95_latency_ms", Verdict.SUCCESSFUL if ok else Verdict.FAILED, required, c, s,
                       len(candidate), len(stable), rule, note=f"{c:.0f} ms {'<=' if ok else '>'} limit {limit:.0f} ms")


def _pick(windows: list[ReleaseWindow], release: str, shadow: bool) -> ReleaseWindow:
    for w in windows:
        if w.release == release and w.shadow == shadow:
            return w
    return ReleaseWindow(release, shadow, 0, 0, 0, 0, ())


def feedback_counts(store: Store) -> CountsSource:
    """Negative ratings over ratings per release, from the store's linked feedback."""
    def counts(route: str, since: float, until: float) -> dict[str, tuple[int, int]]:
        return {s.release: (s.negative, s.count) for s in store.feedback_summary(route, since)}
    return counts


class Analyzer:
    """Reads traffic windows (`windows`: the store, or Redis's live counters), ratings and sampled traces
    from the store, and measures a candidate against its stable release."""

    def __init__(self, store: Store, *, feedback: CountsSource | None = None,
                 windows: LiveWindows | None = None) -> None:
        self.store = store
        self.windows: LiveWindows = windows if windows is not None else store
        self.feedback = feedback if feedback is not None else feedback_counts(store)
        self._live_results: dict[tuple[str, int], bool] = {}  # (trace id, check index) -> passed

    def analyse(self, route: str, candidate: int, stable: int, plan: RolloutPlan, *, since: float, until: float,
                min_samples: int, checks: Sequence[MetricCheck] | None = None, shadow: bool = False) -> Analysis:
        """Shadow steps compare the candidate's shadow answers with what stable served."""
        checks = tuple(checks) if checks is not None else plan.checks
        try:
            windows = self.windows.release_window(route, since, until)
            cand = _pick(windows, f"{route}@{candidate}", shadow)
            stab = _pick(windows, f"{route}@{stable}", False)
            sparse_min = max(SPARSE_FLOOR, int(min_samples * SPARSE_SHARE))
            measurements = [self._measure(c, route, candidate, stable, plan, cand, stab, since, until,
                                          min_samples, sparse_min, shadow) for c in checks]
        except StoreUnavailable as exc:
            measurements = [Measurement(c.metric, Verdict.ERROR, c.is_required(), None, None, 0, 0, "",
                                        note=f"could not read the traces: {exc}") for c in checks]
        verdict = combine((m.verdict, m.required) for m in measurements)
        return Analysis(verdict, tuple(measurements), since, until)

    def _measure(self, check: MetricCheck, route: str, candidate: int, stable: int, plan: RolloutPlan,
                 cand: ReleaseWindow, stab: ReleaseWindow, since: float, until: float, min_samples: int,
                 sparse_min: int, shadow: bool) -> Measurement:
        required, tolerance = check.is_required(), check.tolerance()
        metric = check.metric
        if metric == "p95_latency_ms":
            return compare_latency(cand.latencies_ms, stab.latencies_ms, check, min_samples=min_samples)
        if metric == "error_rate":
            return compare_rates(metric, cand.failed, cand.requests, stab.failed, stab.requests,
                                 tolerance=tolerance, min_samples=min_samples, required=required)
        if metric == "guard_violation_rate":
            return compare_rates(metric, cand.guard_violations, cand.requests, stab.guard_violations, stab.requests,
                                 tolerance=tolerance, min_samples=min_samples, required=required)
        if metric == "grounding_failure_rate":
            return compare_rates(metric, cand.grounding_failures, cand.requests, stab.grounding_failures,
                                 stab.requests, tolerance=tolerance, min_samples=min_samples, required=required)
        if metric == "negative_feedback_rate":
            if self.feedback is None or shadow:
                return Measurement(metric, Verdict.INCONCLUSIVE, required, None, None, 0, 0, "",
                                   note="no ratings for shadow answers" if shadow else "ratings are not collected")
            counts = self.feedback(route, since, until)
            bad_c, n_c = counts.get(f"{route}@{candidate}", (0, 0))
            bad_s, n_s = counts.get(f"{route}@{stable}", (0, 0))
            return compare_rates(metric, bad_c, n_c, bad_s, n_s, tolerance=tolerance, min_samples=sparse_min,
                                 required=required)
        if metric == "live_check_failure_rate":
            if not plan.live_checks:
                return Measurement(metric, Verdict.INCONCLUSIVE, required, None, None, 0, 0, "",
                                   note="the plan declares no live checks")
            (bad_c, n_c), (bad_s, n_s) = self._live_checks(route, candidate, stable, plan, since, until, shadow)
            return compare_rates(metric, bad_c, n_c, bad_s, n_s, tolerance=tolerance, min_samples=sparse_min,
                                 required=required)
        raise AssertionError(f"unhandled metric {metric!r}")  # pragma: no cover - validated by the schema

    def _live_checks(self, route: str, candidate: int, stable: int, plan: RolloutPlan, since: float, until: float,
                     shadow: bool) -> tuple[tuple[int, int], tuple[int, int]]:
        """The plan's suite assertions on a sample of answers (those stored with their content).
        Each trace is judged once and remembered, so every tick only pays for new traces."""
        counts = {f"{route}@{candidate}": [0, 0], f"{route}@{stable}": [0, 0]}
        for trace in self.store.traces_between(route, since, until, limit=plan.live_check_sample * 4):
            release, output = trace.get("release"), trace.get("output")
            if release not in counts or output is None or trace.get("status") != 200:
                continue
            # The candidate's shadow answers in a shadow step, its served ones otherwise; stable's served ones.
            wanted_shadow = shadow if release == f"{route}@{candidate}" else False
            if (trace.get("shadow_of") is not None) != wanted_shadow:
                continue
            bucket = counts[release]
            if bucket[1] >= plan.live_check_sample:
                continue
            passed = True
            for index, assertion in enumerate(plan.live_checks):
                key = (trace["trace_id"], index)
                if key not in self._live_results:
                    result = evaluate(assertion, output, latency_ms=trace.get("latency_ms") or 0.0, cost=0.0)
                    self._live_results[key] = result.passed
                passed = passed and self._live_results[key]
            bucket[0] += 0 if passed else 1
            bucket[1] += 1
        c, s = counts[f"{route}@{candidate}"], counts[f"{route}@{stable}"]
        return (c[0], c[1]), (s[0], s[1])

    def breaches(self, route: str, candidate: int, limits: Sequence[AbsoluteLimit], now: float,
                 since: float = 0.0) -> list[Breach]:
        """Absolute limits on the candidate's served (or, failing that, shadow) traffic over each limit's
        trailing window, never reaching back before `since` (the rollout's start: an earlier rollout of
        the same candidate must not judge this one)."""
        found = []
        for limit in limits:
            windows = self.windows.release_window(route, max(since, now - limit.window_s), now + 1)
            served = _pick(windows, f"{route}@{candidate}", False)
            w = served if served.requests else _pick(windows, f"{route}@{candidate}", True)
            if w.requests < limit.min_samples:
                continue
            value: float | None
            if limit.metric == "error_rate":
                value = w.failed / w.requests
            elif limit.metric == "guard_violation_rate":
                value = w.guard_violations / w.requests
            elif limit.metric == "grounding_failure_rate":
                value = w.grounding_failures / w.requests
            elif limit.metric == "p95_latency_ms":
                value = p95(w.latencies_ms)
            else:
                value = None  # ratings and live checks are judged relative to stable only
            if value is not None and value > limit.above:
                found.append(Breach(limit.metric, value, limit.above, w.requests, limit.window_s))
        return found
