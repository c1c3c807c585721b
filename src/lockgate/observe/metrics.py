"""Prometheus metrics, all prefixed `lockgate_` and labelled by route and release.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by `lockgate serve` before the workers start) sums every worker's values at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = Counter(
    "lockgate_requests_total", "Chat requests by outcome.", ["route", "release", "outcome"]
)
REQUEST_LATENCY = Histogram(
    "lockgate_request_duration_seconds", "Whole request, as the client sees it.", ["route", "release"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    "lockgate_upstream_duration_seconds", "Time spent on backends, retries included.", ["route", "release"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "lockgate_overhead_seconds", "Time the gateway itself added.", ["route", "release"], buckets=OVERHEAD_BUCKETS
)
TOKENS = Counter("lockgate_tokens_total", "Tokens by kind (prompt, completion).", ["route", "release", "kind"])
FALLBACKS = Counter("lockgate_fallbacks_total", "Requests served by a fallback link.", ["route", "release", "target"])
RETRIES = Counter("lockgate_retries_total", "Retried backend attempts.", ["route", "release"])
ATTEMPT_FAILURES = Counter(
    "lockgate_backend_failures_total", "Failed backend attempts by kind.", ["backend", "kind"]
)
CIRCUIT_STATE = Gauge(
    "lockgate_circuit_state", "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.", ["backend"],
    multiprocess_mode="max",
)
GUARD_VERDICTS = Counter(
    "lockgate_guard_verdicts_total", "Guard verdicts by stage, guard and action.",
    ["route", "release", "stage", "guard", "action"],
)
GUARD_DURATION = Histogram(
    "lockgate_guard_duration_seconds", "Time spent in guards per request and stage.", ["route", "release", "stage"],
    buckets=OVERHEAD_BUCKETS,
)
RATELIMIT_ERRORS = Counter(
    "lockgate_ratelimit_errors_total", "Rate-limit decisions that failed and let the request through."
)
TRACE_SPOOL_SEGMENTS = Gauge(
    "lockgate_trace_spool_segments", "Trace journal segments not yet in the store.", multiprocess_mode="max"
)


def render(extra: Sequence[Collector] = ()) -> tuple[bytes, str]:
    """`extra`: collectors whose values live outside this process (e.g. lockgate.drift.publish)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    if extra:
        others = CollectorRegistry(auto_describe=False)
        for collector in extra:
            others.register(collector)
        body += generate_latest(others)
    return body, CONTENT_TYPE_LATEST
