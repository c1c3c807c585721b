"""Whether a rule's condition holds, from numbers already read: pure, so every rule is tested without a store.

Each judgement ends in exactly one of three statuses:

    firing    the condition holds, on at least `min_samples` requests per window read
    ok        it does not hold, on enough data
    no_data   too little traffic (or a metric traces do not carry) to say either: never taken for ok

Threshold rules compare one value with `above` (strictly greater fires) or `below` (strictly less).
Burn-rate rules: the burn rate of a window is its bad-request rate divided by the error budget
(1 - objective). A window pair fires when both its windows burn faster than its factor; it is ok
when any of its windows with enough data burns slower. The rule fires when any pair fires, at the
most severe level among them; it is ok only when every pair is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lockgate.config.alerts import RATE_METRICS, SEVERITIES, BurnRateRule, BurnWindow, ThresholdRule, describe_duration


class Status(StrEnum):
    FIRING = "firing"
    OK = "ok"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Reading:
    """A metric's value over a window; `value` None means no data, and `note` says why."""

    value: float | None
    samples: int
    note: str = ""


@dataclass(frozen=True)
class WindowCounts:
    """Bad requests of all requests in one trailing window."""

    window_s: float
    bad: int
    total: int


@dataclass(frozen=True)
class Condition:
    status: Status
    value: float | None  # the value compared (a burn rate for burn-rate rules)
    threshold: float
    summary: str  # one line for people: what was measured against what
    severity: str | None = None  # the level it fires at; None unless firing
    details: dict[str, Any] = field(default_factory=dict)  # per-window numbers, for notices and the audit log


def judge_threshold(rule: ThresholdRule, reading: Reading) -> Condition:
    limit, word = (rule.above, "above") if rule.above is not None else (rule.below, "below")
    assert limit is not None, "the schema requires above or below"
    window = describe_duration(rule.window_s)
    details = {"metric": rule.metric, "window_s": rule.window_s, "samples": reading.samples, word: limit}
    if reading.value is None:
        return Condition(Status.NO_DATA, None, limit, f"{rule.metric} over {window}: no data ({reading.note})",
                         details=details)
    breached = reading.value > limit if word == "above" else reading.value < limit
    relation = (">" if breached else "<=") if word == "above" else ("<" if breached else ">=")
    summary = (f"{rule.metric} {format_value(rule.metric, reading.value)} {relation} "
               f"{format_value(rule.metric, limit)} over {window} ({reading.samples} samples)")
    if breached:
        return Condition(Status.FIRING, reading.value, limit, summary, rule.severity, details)
    return Condition(Status.OK, reading.value, limit, summary, details=details)


def burn_rate(counts: WindowCounts, error_budget: float) -> float:
    return (counts.bad / counts.total) / error_budget


def judge_burn_rate(rule: BurnRateRule, counts: dict[float, WindowCounts]) -> Condition:
    """`counts` holds every window the rule's pairs name, by length in seconds."""
    budget = rule.slo.error_budget
    pairs: list[dict[str, Any]] = []
    firing: list[tuple[BurnWindow, dict[str, Any]]] = []
    all_ok = True
    for pair in rule.windows:
        long_burn = _burn(counts[pair.long_s], budget, rule.min_samples)
        short_burn = _burn(counts[pair.short_s], budget, rule.min_samples)
        readable = [b for b in (long_burn, short_burn) if b is not None]
        if any(b <= pair.factor for b in readable):
            status = Status.OK
        elif len(readable) == 2:
            status = Status.FIRING
        else:
            status = Status.NO_DATA
        entry: dict[str, Any] = {
            "long_s": pair.long_s, "short_s": pair.short_s, "factor": pair.factor, "severity": pair.severity,
            "long_burn": long_burn, "short_burn": short_burn, "long_n": counts[pair.long_s].total,
            "short_n": counts[pair.short_s].total, "status": status.value}
        pairs.append(entry)
        all_ok = all_ok and status is Status.OK
        if status is Status.FIRING:
            firing.append((pair, entry))
    details = {"slo": {"objective": rule.slo.objective, "metric": rule.slo.metric}, "error_budget": budget,
               "windows": pairs}
    slo = f"SLO {rule.slo.objective:.4g} on {rule.slo.metric}"
    if firing:
        pair, entry = min(firing, key=lambda f: SEVERITIES.index(f[0].severity))
        summary = (f"error budget burning {entry['long_burn']:.1f}x over {describe_duration(pair.long_s)} and "
                   f"{entry['short_burn']:.1f}x over {describe_duration(pair.short_s)}, above {pair.factor:g}x ({slo})")
        return Condition(Status.FIRING, entry["long_burn"], pair.factor, summary, pair.severity, details)
    # Not firing: report the pair that is nearest to firing, by its short window (the one that clears first).
    def short_of(entry: dict[str, Any]) -> float:
        return entry["short_burn"] if entry["short_burn"] is not None else -1.0

    nearest = max(pairs, key=short_of)
    shown = ", ".join(_describe_pair(p) for p in pairs)
    if all_ok:
        return Condition(Status.OK, nearest["short_burn"], nearest["factor"], f"{shown} ({slo})", details=details)
    return Condition(Status.NO_DATA, None, nearest["factor"],
                     f"{shown} ({slo}); fewer than {rule.min_samples} requests in a window", details=details)


def _burn(counts: WindowCounts, budget: float, min_samples: int) -> float | None:
    return burn_rate(counts, budget) if counts.total >= min_samples else None


def _describe_pair(entry: dict[str, Any]) -> str:
    def burn(value: float | None) -> str:
        return "no data" if value is None else f"{value:.1f}x"

    return (f"{describe_duration(entry['long_s'])}/{describe_duration(entry['short_s'])}: "
            f"{burn(entry['long_burn'])}/{burn(entry['short_burn'])} of {entry['factor']:g}x")


def format_value(metric: str, value: float) -> str:
    if metric in RATE_METRICS:
        return f"{value:.1%}"
    if metric == "p95_latency_ms":
        return f"{value:.0f} ms"
    if metric == "complaints":
        return f"{value:.0f}"
    if metric == "cost_ratio":
        return f"{value:.0%} of baseline"
    return f"{value:.3g}"
