"""A/B/n experiments: every arm against the control arm (the route's stable release, else the lowest
version), per metric, plus a sample-ratio-mismatch check.

Sample ratio mismatch: if the arms' shares of traffic differ from their configured weights by more
than chance allows, the assignment is broken (or one arm drops requests) and no per-metric result
can be trusted. Each arm's observed share is tested against its weight with a two-sided binomial
z-test, Bonferroni-corrected over the arms, at the conventional strict SRM level of 0.001.
"""

from __future__ import annotations

import math
from typing import Any

from lockgate.control.state import RouteState
from lockgate.evals.stats import normal_cdf, two_proportion_z
from lockgate.rollout.analysis import p95
from lockgate.store import ReleaseWindow, Store

SRM_ALPHA = 0.001
ALPHA = 0.05


def sample_ratio_mismatch(observed: dict[int, int], weights: dict[int, float]) -> dict[str, Any]:
    total = sum(observed.values())
    arms = []
    mismatch = False
    for version, weight in sorted(weights.items()):
        expected_share = weight / 100
        n = observed.get(version, 0)
        if total == 0:
            arms.append({"version": version, "observed": 0, "expected_share": expected_share, "p_value": None})
            continue
        sd = math.sqrt(expected_share * (1 - expected_share) / total)
        z = (n / total - expected_share) / sd if sd > 0 else 0.0
        p = 2 * (1 - normal_cdf(abs(z)))
        flagged = p * len(weights) < SRM_ALPHA
        mismatch = mismatch or flagged
        arms.append({"version": version, "observed": n, "observed_share": n / total, "expected_share": expected_share,
                     "p_value": p, "mismatch": flagged})
    return {"total": total, "mismatch": mismatch, "alpha": SRM_ALPHA, "arms": arms}


def _rate(w: ReleaseWindow, metric: str) -> tuple[int, int]:
    bad = {"error_rate": w.failed, "guard_violation_rate": w.guard_violations,
           "grounding_failure_rate": w.grounding_failures}[metric]
    return bad, w.requests


def compare_arms(store: Store, state: RouteState, *, since: float, until: float | None = None) -> dict[str, Any]:
    experiment = state.experiment
    assert experiment is not None
    route = state.route
    windows = {w.release: w for w in store.release_window(route, since, until) if not w.shadow}
    versions = sorted(experiment.arms)
    control = state.stable if state.stable in experiment.arms else versions[0]
    empty = ReleaseWindow("", False, 0, 0, 0, 0, ())
    arm = {v: windows.get(f"{route}@{v}", empty) for v in versions}
    rows: list[dict[str, Any]] = []
    for v in versions:
        if v == control:
            continue
        for metric in ("error_rate", "guard_violation_rate", "grounding_failure_rate"):
            bad_c, n_c = _rate(arm[control], metric)
            bad_v, n_v = _rate(arm[v], metric)
            if n_c == 0 or n_v == 0:
                rows.append({"arm": v, "metric": metric, "control": None, "value": None, "p_value": None,
                             "significant": False, "note": "no traffic"})
                continue
            _, p = two_proportion_z(bad_v, n_v, bad_c, n_c)
            rows.append({"arm": v, "metric": metric, "control": bad_c / n_c, "value": bad_v / n_v, "p_value": p,
                         "significant": p < ALPHA})
        rows.append({"arm": v, "metric": "p95_latency_ms", "control": p95(arm[control].latencies_ms),
                     "value": p95(arm[v].latencies_ms), "p_value": None, "significant": None,
                     "note": "descriptive"})
    return {"route": route, "experiment": experiment.name, "control": control, "since": since,
            "arms": {v: arm[v].requests for v in versions},
            "srm": sample_ratio_mismatch({v: arm[v].requests for v in versions}, experiment.arms),
            "comparisons": rows}


def render_report(report: dict[str, Any]) -> str:
    route = report["route"]
    lines = [f"experiment {report['experiment']} on {route} (control {route}@{report['control']})"]
    srm = report["srm"]
    lines.append(f"sample ratio: {'MISMATCH — results are not trustworthy' if srm['mismatch'] else 'ok'} "
                 f"({srm['total']} requests)")
    for a in srm["arms"]:
        share = a.get("observed_share")
        lines.append(f"  {route}@{a['version']}: {a['observed']} requests"
                     + (f", {share:.1%} vs {a['expected_share']:.1%} expected" if share is not None else ""))
    lines.append(f"  {'arm':<16}{'metric':<26}{'control':>10}{'arm':>10}{'p':>9}  significant")
    for r in report["comparisons"]:
        def fmt(x: float | None, metric: str = r["metric"]) -> str:
            if x is None:
                return "-"
            return f"{x:.0f}ms" if metric == "p95_latency_ms" else f"{x:.2%}"
        p = "-" if r["p_value"] is None else f"{r['p_value']:.3f}"
        sig = "-" if r["significant"] is None else ("yes" if r["significant"] else "no")
        lines.append(f"  {route + '@' + str(r['arm']):<16}{r['metric']:<26}{fmt(r['control']):>10}{fmt(r['value']):>10}"
                     f"{p:>9}  {sig}")
    return "\n".join(lines)
