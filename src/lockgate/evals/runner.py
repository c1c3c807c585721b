"""Run an evaluation suite against a release through the real gateway pipeline, and judge it.

`run_release` builds a `Runtime` from the configuration with the route's `serve` switched to the
release under test, runs the ASGI app in-process (lifespan included, so backends and guards load)
and POSTs every case to `/v1/chat/completions`, exactly as live traffic would arrive. `compute_metrics`
and `gate` turn the per-case results into the numbers and the verdict `lockgate eval` reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from lockgate.config import LockgateConfig
from lockgate.evals import refusals, stats
from lockgate.evals.assertions import Similarity, split_type
from lockgate.evals.suite import Case, Suite
from lockgate.gateway.runtime import ServingRelease
from lockgate.releases import parse_release_id
from lockgate.settings import Settings
from lockgate.store import ReleaseRecord, Store

log = logging.getLogger(__name__)

GUARD_ACTION_HEADER = "x-lockgate-guard-action"
REQUEST_TIMEOUT_S = 600.0


class EvalSetupError(RuntimeError):
    """The evaluation could not be set up (unknown release, bad configuration, backend not loadable)."""


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


def resolve_release(config: LockgateConfig, registry: dict[str, dict[str, ReleaseRecord]],
                    store: Store, ref: str) -> ServingRelease:
    """`ROUTE@N` (a registered version) or `ROUTE:LABEL` (a label in the configuration)."""
    if "@" in ref:
        route = ref.partition("@")[0]
        if route not in config.routes:
            raise EvalSetupError(_unknown_route(config, route, ref))
        parsed = parse_release_id(ref)
        record = store.get_release(*parsed) if parsed else None
        if record is None:
            known = ", ".join(r.release_id for r in store.list_releases(route)) or "none"
            raise EvalSetupError(f"no release {ref}; registered releases of {route!r}: {known} "
                                 "(see `lockgate release list`)")
        for label, spec in config.routes[route].releases.items():
            if spec.content_hash() == record.content_hash:
                return _serving(config, registry, route, label)
        raise EvalSetupError(f"release {ref} ({record.label}) is no longer declared in the configuration with the "
                             "same content, so it cannot be served; evaluate a release the configuration declares")
    if ":" in ref:
        route, _, label = ref.partition(":")
        if route not in config.routes:
            raise EvalSetupError(_unknown_route(config, route, ref))
        if label not in config.routes[route].releases:
            known = ", ".join(sorted(config.routes[route].releases))
            raise EvalSetupError(f"route {route!r} has no release labelled {label!r} (labels: {known})")
        return _serving(config, registry, route, label)
    raise EvalSetupError(f"cannot read release {ref!r}: use ROUTE@VERSION (e.g. support-bot@2) or ROUTE:LABEL "
                         "(e.g. support-bot:v2)")


def _serving(
    config: LockgateConfig, registry: dict[str, dict[str, ReleaseRecord]], route: str, label: str
) -> ServingRelease:
    return ServingRelease(route, label, config.routes[route].releases[label], registry[route][label])


def _unknown_route(config: LockgateConfig, route: str, ref: str) -> str:
    return f"release {ref!r}: no route {route!r} in the configuration (routes: {', '.join(sorted(config.routes))})"


def config_for(config: LockgateConfig, ref: ServingRelease) -> LockgateConfig:
    """The configuration with `ref` serving its route and no API key needed (in-process only)."""
    route = config.routes[ref.route].model_copy(update={"serve": ref.label})
    server = config.server.model_copy(update={"require_api_key": False})
    return config.model_copy(update={"routes": {**config.routes, ref.route: route}, "server": server})


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
    payload = {"model": route, "messages": [m.model_dump() for m in case.messages or []]}
    started = time.perf_counter()
    try:
        resp = await client.post("/v1/chat/completions", json=payload, timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any transport failure is this case's error
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.error = f"request failed: {exc!r}"
        return result
    result.latency_ms = (time.perf_counter() - started) * 1000
    result.status = resp.status_code
    result.guard_action = resp.headers.get(GUARD_ACTION_HEADER)
    withheld = refusals.withheld_by_guard(result.guard_action)
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        if not withheld:
            result.error = f"HTTP {resp.status_code}: {message or resp.text[:300]}"
            return result
        # An input guard refused the request: a refusal (see evals/refusals.py), judged like an answer
        # whose text is the gateway's message.
        body = {"choices": [{"message": {"content": message or ""}, "finish_reason": "content_filter"}]}
    try:
        choice = body["choices"][0]
        result.output = choice["message"].get("content") or ""
        result.finish_reason = choice.get("finish_reason")
        usage = body.get("usage") or {}
        result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        result.completion_tokens = int(usage.get("completion_tokens") or 0)
        result.total_tokens = int(usage.get("total_tokens") or result.prompt_tokens + result.completion_tokens)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        result.error = f"unexpected response body ({exc!r}): {resp.text[:300]}"
        return result
    result.refused = refusals.is_refusal(result.output, withheld=withheld)
    if similarity is None:
        _judge(suite, case, result, None, withheld)
    else:  # the encoder's forward pass would stall the event loop the gateway runs on
        await asyncio.to_thread(_judge, suite, case, result, similarity, withheld)
    return result


async def _serve_and_run(settings: Settings, config: LockgateConfig, store: Store, suite: Suite, ref: ServingRelease,
                         concurrency: int, progress: Callable[[int, int], None],
                         similarity: Similarity | None) -> list[CaseResult]:
    from lockgate.gateway.app import create_app
    from lockgate.gateway.runtime import Runtime

    try:
        # The release under test, whatever a live rollout on the same store is doing.
        runtime = Runtime(settings, config_for(config, ref), store, workers=1, follow_route_state=False,
                          run_controller=False)
    except Exception as exc:
        raise EvalSetupError(f"cannot build the gateway for {ref.release_id}: {exc}") from exc
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        for name, backend in runtime.serving_backends().items():
            try:
                await backend.start()
            except Exception as exc:
                raise EvalSetupError(f"backend {name!r} of {ref.release_id} failed to load: {exc}") from exc
            if not backend.is_ready():
                detail = getattr(backend, "load_error", None)
                raise EvalSetupError(f"backend {name!r} of {ref.release_id} is not ready"
                                     + (f": {detail}" if detail else ""))
        sem = asyncio.Semaphore(max(1, concurrency))
        done = 0
        total = len(suite.cases)

        async def one(case: Case) -> CaseResult:
            nonlocal done
            async with sem:
                r = await _run_case(client, suite, case, ref.route, similarity)
            done += 1
            progress(done, total)
            return r

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lockgate") as client:
            return list(await asyncio.gather(*(one(c) for c in suite.cases)))


def stderr_progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\reval {label}: {done}/{total}{end}")
        sys.stderr.flush()
    return show


def run_release(settings: Settings, config: LockgateConfig, store: Store, suite: Suite, ref: ServingRelease, *,
                concurrency: int = 2, progress: Callable[[int, int], None] | None = None) -> list[CaseResult]:
    similarity = similarity_for(suite)  # before the backends load: a missing model fails fast
    return asyncio.run(_serve_and_run(settings, config, store, suite, ref, concurrency,
                                      progress or stderr_progress(ref.release_id), similarity))


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


def _release_info(ref: ServingRelease) -> dict[str, Any]:
    return {"id": ref.release_id, "route": ref.route, "label": ref.label, "version": ref.record.version,
            "content_hash": ref.record.content_hash}


def run_evaluation(settings: Settings, config: LockgateConfig, suite: Suite, release: str,
                   baseline: str | None = None, *, concurrency: int = 2) -> dict[str, Any]:
    """Run `suite` on `release` (and `baseline`) and return the full report. Raises EvalSetupError."""
    from lockgate.gateway.runtime import open_store, register_releases

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(settings)
    except Exception as exc:
        raise EvalSetupError(f"cannot open the store in {settings.data_dir}: {exc}") from exc
    registry = register_releases(config, store)
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
        "release": _release_info(candidate),
        "generated_at": time.time(),
        "metrics": metrics,
        "slices": metrics_by_slice(results),
        "gate": checks,
        "passed": all(c["ok"] for c in checks),
        "cases": [r.to_dict() for r in results],
    }
    if base_ref is not None and base_results is not None:
        report["baseline"] = {**_release_info(base_ref), "metrics": compute_metrics(base_results),
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
