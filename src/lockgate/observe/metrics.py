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
    Summary,
    generate_latest,
    multiprocess,
    values,
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
    "lockgate_ratelimit_errors_total",
    "Rate-limit decisions that failed (the request was let through or refused, as redis.on_failure says)."
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


ROLLOUT_WEIGHT = Gauge(
    "lockgate_rollout_candidate_weight_percent",
    "Percent of users the route's rollout candidate serves (0 when none or rolled back).",
    ["route"],
    multiprocess_mode="mostrecent",
)
ROLLOUT_SHADOW = Gauge(
    "lockgate_rollout_shadow_percent", "Percent of requests copied to the route's shadow candidate.", ["route"],
    multiprocess_mode="mostrecent",
)
ASSIGNMENTS = Counter(
    "lockgate_assignments_total", "Requests by how their release was chosen.", ["route", "release", "role"]
)
SHADOW_REQUESTS = Counter(
    "lockgate_shadow_requests_total", "Shadow copies sent to a candidate, by result.", ["route", "release", "result"]
)
# Feedback, counted when a rating is linked to its request's trace (lockgate.feedback explains why there).
FEEDBACK = Counter(
    "lockgate_feedback_total", "User ratings linked to a request, by the request's route and release.",
    ["route", "release", "rating"],
)
FEEDBACK_SCORE = Summary(
    "lockgate_feedback_score", "Ratings normalised to [0, 1]; _sum / _count is the mean.", ["route", "release"]
)
FEEDBACK_KEY_MISMATCH = Counter(
    "lockgate_feedback_key_mismatch_total", "Ratings sent with another API key than the rated request's (ignored).",
    ["route", "release"],
)


def enable_multiprocess(directory: str) -> None:
    """Makes this process write its metrics where the workers' scrapes sum them (the supervisor links
    feedback and counts it). prometheus_client chooses its value class when first imported, which in
    the supervisor is before the directory exists, so the choice is made again here."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()

# -- Alerts (lockgate.alerts): counted where the evaluator runs (the lone worker, or the `serve` supervisor).
ALERT_STATE = Gauge(
    "lockgate_alert_state", "Each alert rule's state: 0 ok, 1 pending, 2 firing, -1 no data.", ["alert", "route"],
    multiprocess_mode="mostrecent",
)
ALERT_NOTICES = Counter(
    "lockgate_alert_notices_total", "Alert transitions notified, by kind (firing, escalated, resolved).",
    ["alert", "notice"],
)
ALERT_EVALUATION_ERRORS = Counter(
    "lockgate_alert_evaluation_errors_total", "Rule evaluations or actions that failed (logged).", ["alert"]
)
ALERT_WEBHOOKS = Counter(
    "lockgate_alert_webhook_deliveries_total", "Webhook notices by outcome (delivered, failed, dropped).",
    ["alert", "outcome"],
)
ALERT_WEBHOOK_RETRIES = Counter(
    "lockgate_alert_webhook_retries_total", "Webhook attempts retried after a failure.", ["alert"]
)
