"""Reads what a rule needs: the route's served traffic over trailing windows (from `windows`: the store,
or Redis's live counters, lockgate.observe.windows), ratings and trace samples from the store.

Every metric is of the route as its users meet it: all releases serving it (stable and canary
alike), shadow copies left out (their answers reach nobody). Counts come from the trace facts the
store keeps in columns (lockgate.store.trace_facts), so a window of hours is one indexed query.

Two metrics are limited by what traces hold, and say so rather than guess:
  - cost_ratio counts tokens (prompt + completion) unless the rule sets a `price`; then each kind
    of token is priced. Traces stored before the token columns existed count as zero tokens.
  - mean_confidence averages the `confidence` field of the window's answered traces (the field drift
    reads too). No guard writes one yet, so today it is `no data`: reported as such, never as OK.
    There is no column for it: up to CONFIDENCE_SAMPLE trace bodies of the window are read.
"""

from __future__ import annotations

from lockgate.alerts.judge import Condition, Reading, WindowCounts, judge_burn_rate, judge_threshold
from lockgate.config.alerts import BurnRateRule, Price, ThresholdRule
from lockgate.observe.windows import LiveWindows
from lockgate.rollout.analysis import p95
from lockgate.store import ReleaseWindow, Store

NO_CONFIDENCE = "traces carry no confidence score (no guard records one yet)"
CONFIDENCE_SAMPLE = 2000


def evaluate(store: Store, rule: ThresholdRule | BurnRateRule, now: float, *,
             windows: LiveWindows | None = None) -> Condition:
    source: LiveWindows = windows if windows is not None else store
    if isinstance(rule, BurnRateRule):
        return judge_burn_rate(rule, burn_counts(source, rule, now))
    return judge_threshold(rule, read_threshold(store, source, rule, now))


def served(windows: list[ReleaseWindow]) -> list[ReleaseWindow]:
    return [w for w in windows if not w.shadow]


def bad_of(window: ReleaseWindow, metric: str) -> int:
    if metric == "error_rate":
        return window.failed
    if metric == "guard_violation_rate":
        return window.guard_violations
    if metric == "grounding_failure_rate":
        return window.grounding_failures
    raise ValueError(f"{metric} is not a rate of requests")


def counts(source: LiveWindows, route: str, metric: str, since: float, until: float) -> WindowCounts:
    windows = served(source.release_window(route, since, until, with_latencies=False))
    return WindowCounts(until - since, sum(bad_of(w, metric) for w in windows), sum(w.requests for w in windows))


def burn_counts(source: LiveWindows, rule: BurnRateRule, now: float) -> dict[float, WindowCounts]:
    lengths = {length for pair in rule.windows for length in (pair.long_s, pair.short_s)}
    return {length: counts(source, rule.route, rule.slo.metric, now - length, now) for length in lengths}


def read_threshold(store: Store, source: LiveWindows, rule: ThresholdRule, now: float) -> Reading:
    since = now - rule.window_s
    metric = rule.metric
    if metric == "mean_confidence":
        return _mean_confidence(store, rule, since, now)
    if metric == "complaints":
        # Ratings arrive later than requests and may be few: a count, judged however few there are.
        negative = sum(s.negative for s in store.feedback_summary(rule.route, since))
        return Reading(float(negative), negative)
    if metric == "cost_ratio":
        return _cost_ratio(source, rule, now)
    windows = served(source.release_window(rule.route, since, now, with_latencies=metric == "p95_latency_ms"))
    requests = sum(w.requests for w in windows)
    if metric == "p95_latency_ms":
        latencies = [ms for w in windows for ms in w.latencies_ms]
        if len(latencies) < rule.min_samples:
            return Reading(None, len(latencies), f"{len(latencies)} answered requests, {rule.min_samples} needed")
        return Reading(p95(latencies), len(latencies))
    if requests < rule.min_samples:
        return Reading(None, requests, f"{requests} requests, {rule.min_samples} needed")
    return Reading(sum(bad_of(w, metric) for w in windows) / requests, requests)


def cost_of(windows: list[ReleaseWindow], price: Price | None) -> float:
    if price is None:
        return float(sum(w.prompt_tokens + w.completion_tokens for w in windows))
    return sum(w.prompt_tokens * price.prompt_per_1k + w.completion_tokens * price.completion_per_1k
               for w in windows) / 1000


def _cost_ratio(source: LiveWindows, rule: ThresholdRule, now: float) -> Reading:
    """Spend per second (or per request) over the window, against the `baseline_s` just before it."""
    start = now - rule.window_s
    current = served(source.release_window(rule.route, start, now, with_latencies=False))
    baseline = served(source.release_window(rule.route, start - rule.baseline_s, start, with_latencies=False))
    n_now, n_base = sum(w.requests for w in current), sum(w.requests for w in baseline)
    if n_now < rule.min_samples or n_base < rule.min_samples:
        return Reading(None, n_now, f"{n_now} requests in the window and {n_base} in the baseline, "
                                    f"{rule.min_samples} needed in each")
    spend_now = cost_of(current, rule.price) / (n_now if rule.per_request else rule.window_s)
    spend_base = cost_of(baseline, rule.price) / (n_base if rule.per_request else rule.baseline_s)
    if spend_base <= 0:
        return Reading(None, n_now, "the baseline cost nothing (no tokens recorded)")
    return Reading(spend_now / spend_base, n_now)


def _mean_confidence(store: Store, rule: ThresholdRule, since: float, now: float) -> Reading:
    traces = store.traces_between(rule.route, since, now, limit=CONFIDENCE_SAMPLE)
    scores = [float(t["confidence"]) for t in traces if t.get("shadow_of") is None and t.get("status") == 200
              and isinstance(t.get("confidence"), int | float) and not isinstance(t.get("confidence"), bool)]
    if not scores:
        return Reading(None, 0, NO_CONFIDENCE)
    if len(scores) < rule.min_samples:
        return Reading(None, len(scores), f"{len(scores)} answers with a confidence score, {rule.min_samples} needed")
    return Reading(sum(scores) / len(scores), len(scores))
