"""Run an evaluation suite against a release through the real gateway pipeline, and judge it.

`run_release` serves the release under test in process (`evals/serving.py`: a `Runtime` with the
route's `serve` switched to it, lifespan included, so backends and guards load) and POSTs every case
to `/v1/chat/completions`, exactly as live traffic would arrive. `compute_metrics`
and `gate` turn the per-case results into the numbers and the verdict `lockgate eval` reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from lockgate.config import LockgateConfig
from lockgate.evals import refusals, stats
from lockgate.evals.assertions import Similarity, split_type
from lockgate.evals.serving import (
    GUARD_ACTION_HEADER,
    EvalSetupError,
    ask,
    config_for,
    open_store_and_registry,
    release_info,
    resolve_release,
    run_bounded,
    serve,
    stderr_progress,
)
from lockgate.evals.suite import Case, Suite
from lockgate.gateway.runtime import ServingRelease
from lockgate.settings import Settings
from lockgate.store import Store

log = logging.getLogger(__name__)

__all__ = ["EvalSetupError", "GUARD_ACTION_HEADER", "config_for", "resolve_release", "run_evaluation"]


@dataclass
class CaseResult:
    id: str
    tags: list[str]
    label: str | None
    input: str
    expected: str | None
    output: str = ""
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    finish_reason: str | None = None
    status: int | None = None
    guard_action: str | None = None
    error: str | None = None
    assertions: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = False
    refused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_user(case: Case) -> str:
    for m in reversed(case.messages or []):
        if m.role == "user":
            return m.content
    return (case.messages or [])[-1].content if case.messages else ""


def similarity_for(suite: Suite) -> Similarity | None:
    """The embedding model's similarity when the suite has a semantic-similarity assertion, else None:
    the model (about 90 MB) is loaded only for suites that use it, and a missing model is a setup error."""
    assertions = [*suite.defaults, *(a for case in suite.cases for a in case.asserts)]
    if not any(split_type(a.type)[0] == "semantic-similarity" for a in assertions):
        return None
    from lockgate.embeddings.minilm import get_encoder

    try:
        return get_encoder().similarity
    except Exception as exc:  # noqa: BLE001 - missing or unreadable model files: the run cannot be judged
        raise EvalSetupError(f"suite {suite.name!r} has semantic-similarity assertions but the embedding model "
                             f"cannot be loaded: {exc}") from exc


def _judge(suite: Suite, case: Case, result: CaseResult, similarity: Similarity | None, withheld: bool) -> None:
    all_passed = True
    for assertion in [*suite.defaults, *case.asserts]:
        r = refusals.judge(assertion, result.output, withheld=withheld, latency_ms=result.latency_ms, cost=0.0,
                           similarity=similarity)
        result.assertions.append({"type": assertion.type, "value": assertion.value, "passed": r.passed,
                                  "reason": r.reason, "error": r.error})
        all_passed = all_passed and r.passed and r.error is None
    result.passed = all_passed and result.error is None


async def _run_case(client: httpx.AsyncClient, suite: Suite, case: Case, route: str,
                    similarity: Similarity | None = None) -> CaseResult:
    assert case.id is not None
    result = CaseResult(id=case.id, tags=list(case.tags), label=case.label, input=_last_user(case),
                        expected=case.expected)
    answer = await ask(client, route, [m.model_dump() for m in case.messages or []])
    for name in ("output", "latency_ms", "status", "guard_action", "finish_reason", "prompt_tokens",
                 "completion_tokens", "total_tokens", "error"):
        setattr(result, name, getattr(answer, name))
    if answer.error is not None:
        return result
    result.refused = refusals.is_refusal(result.output, withheld=answer.withheld)
    if similarity is None:
        _judge(suite, case, result, None, answer.withheld)
    else:  # the encoder's forward pass would stall the event loop the gateway runs on
        await asyncio.to_thread(_judge, suite, case, result, similarity, answer.withheld)
    return result


async def _serve_and_run(settings: Settings, config: LockgateConfig, store: Store, suite: Suite, ref: ServingRelease,
                         concurrency: int, progress: Callable[[int, int], None],
                         similarity: Similarity | None) -> list[CaseResult]:
    async with serve(settings, config, store, ref) as client:
        return await run_bounded(suite.cases, lambda case: _run_case(client, suite, case, ref.route, similarity),
                                 concurrency, progress)


def run_release(settings: Settings, config: LockgateConfig, store: Store, suite: Suite, ref: ServingRelease, *,
                concurrency: int = 2, progress: Callable[[int, int], None] | None = None) -> list[CaseResult]:
    similarity = similarity_for(suite)  # before the backends load: a missing model fails fast
    return asyncio.run(_serve_and_run(settings, config, store, suite, ref, concurrency,
                                      progress or stderr_progress("eval", ref.release_id), similarity))


# -- metrics ------------------------------------------------------------------------------------


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def compute_metrics(results: list[CaseResult]) -> dict[str, Any]:
    n = len(results)
    passed = sum(r.passed for r in results)
    errors = sum(r.error is not None for r in results)
    harmful = [r for r in results if r.label == "harmful"]
    benign = [r for r in results if r.label == "benign"]
    latencies = [r.latency_ms for r in results if r.error is None]
    low, high = stats.wilson_interval(passed, n)
    lat = stats.latency_summary(latencies) if latencies else {"p50": None, "p95": None, "p99": None,
                                                              "mean": None, "n": 0}
    return {
        "n": n,
        "passed": passed,
        "pass_rate": _rate(passed, n),
        "pass_rate_ci95": [low, high],
        "errors": errors,
        "error_rate": _rate(errors, n),
        "harmful_n": len(harmful),
        "refusal_rate_harmful": _rate(sum(r.refused for r in harmful), len(harmful)),
        "benign_n": len(benign),
        "refusal_rate_benign": _rate(sum(r.refused for r in benign), len(benign)),
        "latency_ms": lat,
        "total_tokens": sum(r.total_tokens for r in results),
    }


def metrics_by_slice(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    tags = sorted({t for r in results for t in r.tags})
    return {t: compute_metrics([r for r in results if t in r.tags]) for t in tags}


def compare(baseline: list[CaseResult], candidate: list[CaseResult], alpha: float = 0.05) -> dict[str, Any]:
    base = {r.id: r.passed for r in baseline}
    b = sum(1 for r in candidate if r.id in base and base[r.id] and not r.passed)
    c = sum(1 for r in candidate if r.id in base and not base[r.id] and r.passed)
    result = stats.mcnemar(b, c)
    return {
        "paired_cases": sum(1 for r in candidate if r.id in base),
        "regressions_b": b,
        "fixes_c": c,
        "p_value": result.p_value,
        "p_value_mid": result.p_value_mid,
        "direction": result.direction,
        "alpha": alpha,
        "verdict": stats.significance(result, alpha).value,
        "significant_regression": stats.regression(result, alpha),
        "regressed_cases": [r.id for r in candidate if r.id in base and base[r.id] and not r.passed],
        "fixed_cases": [r.id for r in candidate if r.id in base and not base[r.id] and r.passed],
    }


def gate(suite: Suite, metrics: dict[str, Any], comparison: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per check: name, limit, actual value, ok. A metric with no data (e.g. no benign cases) is skipped."""
    t = suite.thresholds
    checks: list[dict[str, Any]] = []

    def add(name: str, limit: float | None, actual: float | None, ok: Callable[[float, float], bool]) -> None:
        if limit is None:
            return
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            checks.append({"check": name, "limit": limit, "actual": None, "ok": True, "note": "no data; skipped"})
            return
        checks.append({"check": name, "limit": limit, "actual": actual, "ok": ok(actual, limit)})

    add("pass_rate", t.pass_rate, metrics["pass_rate"], lambda a, lim: a >= lim)
    add("max_error_rate", t.max_error_rate, metrics["error_rate"], lambda a, lim: a <= lim)
    add("max_p95_latency_ms", t.max_p95_latency_ms, metrics["latency_ms"]["p95"], lambda a, lim: a <= lim)
    add("max_refusal_rate_benign", t.max_refusal_rate_benign, metrics["refusal_rate_benign"],
        lambda a, lim: a <= lim)
    add("min_refusal_rate_harmful", t.min_refusal_rate_harmful, metrics["refusal_rate_harmful"],
        lambda a, lim: a >= lim)
    if comparison is not None:
        checks.append({"check": "no_significant_regression", "limit": comparison["alpha"],
                       "actual": comparison["p_value"], "ok": not comparison["significant_regression"]})
    return checks


# -- the whole evaluation -----------------------------------------------------------------------


def run_evaluation(settings: Settings, config: LockgateConfig, suite: Suite, release: str,
                   baseline: str | None = None, *, concurrency: int = 2) -> dict[str, Any]:
    """Run `suite` on `release` (and `baseline`) and return the full report. Raises EvalSetupError."""
    store, registry = open_store_and_registry(settings, config)
    candidate = resolve_release(config, registry, store, release)
    base_ref = resolve_release(config, registry, store, baseline) if baseline else None
    for ref in (candidate, base_ref):
        if ref is not None and ref.route != suite.route:
            raise EvalSetupError(f"suite {suite.name!r} is for route {suite.route!r} but release {ref.release_id} "
                                 f"is on route {ref.route!r}")
    results = run_release(settings, config, store, suite, candidate, concurrency=concurrency)
    base_results = run_release(settings, config, store, suite, base_ref, concurrency=concurrency) if base_ref else None
    metrics = compute_metrics(results)
    comparison = compare(base_results, results) if base_results is not None else None
    checks = gate(suite, metrics, comparison)
    report: dict[str, Any] = {
        "suite": {"name": suite.name, "version": suite.version, "route": suite.route, "risk": suite.risk,
                  "thresholds": suite.thresholds.model_dump(), "cases": len(suite.cases)},
        "release": release_info(candidate),
        "generated_at": time.time(),
        "metrics": metrics,
        "slices": metrics_by_slice(results),
        "gate": checks,
        "passed": all(c["ok"] for c in checks),
        "cases": [r.to_dict() for r in results],
    }
    if base_ref is not None and base_results is not None:
        report["baseline"] = {**release_info(base_ref), "metrics": compute_metrics(base_results),
                              "slices": metrics_by_slice(base_results),
                              "cases": [r.to_dict() for r in base_results]}
        report["comparison"] = comparison
    _store_evidence(store, report)
    return report


def _store_evidence(store: Store, report: dict[str, Any]) -> None:
    """The gate's verdict and numbers become the release's evidence (not the per-case detail, which
    lives in the report files): what a promotion or a readiness report cites later."""
    release = report["release"]
    summary = {
        "suite": report["suite"],
        "metrics": report["metrics"],
        "gate": report["gate"],
        "baseline": report["baseline"]["id"] if "baseline" in report else None,
        "comparison": report.get("comparison"),
        "generated_at": report["generated_at"],
    }
    try:
        store.add_evidence(release["route"], release["version"], "eval", report["passed"], summary)
    except Exception as exc:  # noqa: BLE001 - the run's verdict stands; losing its record is reported
        log.warning("could not store the evaluation as evidence for %s: %s", release["id"], exc)
