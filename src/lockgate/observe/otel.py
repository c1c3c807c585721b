"""OpenTelemetry export: one span per chat request, following the GenAI semantic conventions.

Off unless `telemetry.otlp_endpoint` is set in lockgate.yaml; when off, `build_request_spans` returns
None, the OpenTelemetry packages are never imported and the request path pays one `is None` test.

When on, each worker process has its own tracer provider with a `BatchSpanProcessor`: ending a span
only queues it, and a background thread exports batches over OTLP/HTTP (protobuf). A slow or absent
collector costs the request path nothing; when the queue is full, spans are dropped, never waited for.
What it does cost is CPU in the worker's interpreter: building a span and, in the export thread,
encoding it (the OpenTelemetry encoder is Python), a few hundred microseconds per sampled request
on the shared 2-core test machine, and the export thread competes with the event loop for the GIL.
`sample_ratio` is the lever: an unsampled request costs a tenth of a sampled one.

The span is built where the trace record is (`lockgate.gateway.recording.record`), from the trace record
itself, so the two never disagree:

- name `chat {route}`, as the conventions ask (`{gen_ai.operation.name} {gen_ai.request.model}`), or
  `chat` alone for a request refused before a route was chosen;
- kind SERVER: the conventions describe the inference call from the caller's side (a CLIENT span, which
  the application's own instrumentation emits); Lockgate serves that call, so its span is the server
  half, and a caller's `traceparent` makes it that CLIENT span's child;
- `gen_ai.*` attributes: operation, provider (`lockgate`, the service the caller talked to; the backend
  that answered is `lockgate.backend` and its model `gen_ai.response.model`), request parameters as
  sent to the backend, token usage, finish reasons, response id;
- `lockgate.*` attributes: request id (the `x-request-id` a user quotes, and the trace's id in the
  store, where everything else about the request is), release, outcome, overhead, attempts;
- guard verdicts as `gen_ai.evaluation.result` events: `gen_ai.evaluation.name` (the guard),
  `.score.value` (its score), `.score.label` (its action) and `lockgate.guard.stage`; never the text a
  guard matched, nor its reason. By default only verdicts that acted (redact, block, ...) are events
  and the guards that allowed are listed in `lockgate.guards.allowed`: events are the dearest part
  of a span, and nine "allow" events per request cost a quarter to two thirds more CPU than the
  default in our runs (bench/results/otel.md); `guard_events: all` makes every verdict an event;
- status ERROR, with `error.type`, when the gateway answered 5xx (a backend failure the fallback chain
  could not absorb); client errors (4xx, guard blocks included) are not span errors, as for any server.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import lockgate
from lockgate.backends.base import BackendCall
from lockgate.config.schema import TelemetryConfig

log = logging.getLogger(__name__)

INSTRUMENTATION_SCOPE = "lockgate.gateway"
PROVIDER = "lockgate"
TRACES_PATH = "/v1/traces"
EVALUATION_EVENT = "gen_ai.evaluation.result"


def build_request_spans(config: TelemetryConfig) -> RequestSpans | None:
    return RequestSpans(config) if config.otlp_endpoint else None


def traces_url(endpoint: str) -> str:
    """The collector's base URL as configured (like OTEL_EXPORTER_OTLP_ENDPOINT), to its traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class RequestSpans:
    """Exports one span per finished chat request. One per worker process."""

    def __init__(self, config: TelemetryConfig, *, exporter: Any = None) -> None:
        """`exporter`: an OpenTelemetry `SpanExporter` to use instead of OTLP/HTTP (tests, benchmarks)."""
        # Imported here, not at the top: a gateway without telemetry never loads these packages.
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        assert config.otlp_endpoint is not None
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        resource = Resource.create({
            "service.name": config.service_name,
            "service.version": lockgate.__version__,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        })
        # A provider of our own rather than the global one: nothing else in the process is affected.
        self._provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
        if exporter is None:
            exporter = OTLPSpanExporter(
                endpoint=traces_url(config.otlp_endpoint), headers=dict(config.headers) or None,
                timeout=config.timeout_s,
            )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._all_verdicts = config.guard_events == "all"
        self._tracer = self._provider.get_tracer(INSTRUMENTATION_SCOPE, lockgate.__version__)

    def incoming_context(self, headers: Mapping[str, str]) -> Any:
        """The caller's W3C trace context (`traceparent`, `tracestate`), read when the request arrives."""
        if "traceparent" not in headers:
            return None
        return self._propagator.extract({k: headers[k] for k in ("traceparent", "tracestate") if k in headers})

    def export(self, trace: dict[str, Any], *, parent: Any = None, call: BackendCall | None = None) -> None:
        """Queues the span for a request whose trace record is `trace`. Never raises into the request."""
        try:
            self._export(trace, parent, call)
        except Exception:  # noqa: BLE001 - telemetry must never fail a request
            log.exception("could not build the OpenTelemetry span for %s", trace.get("trace_id"))

    def _export(self, trace: dict[str, Any], parent: Any, call: BackendCall | None) -> None:
        end_ns = int(trace["ts"] * 1e9)
        start_ns = end_ns - int(trace["latency_ms"] * 1e6)
        # Span names must stay few: a request refused before routing carries whatever model name the
        # client sent, so only a served route goes into the name.
        name = f"chat {trace['route']}" if trace.get("release") else "chat"
        span = self._tracer.start_span(name, context=parent, kind=self._trace.SpanKind.SERVER, start_time=start_ns)
        if span.is_recording():  # not sampled: nothing more to build
            span.set_attributes(span_attributes(trace, call))
            ran, acted = set(), set()
            for stage in ("input", "output"):
                for verdict in (trace.get("guards") or {}).get(stage, []):
                    name = f"{stage}:{verdict['guard']}"
                    ran.add(name)
                    if verdict["action"] != "allow":
                        acted.add(name)
                    if self._all_verdicts or verdict["action"] != "allow":
                        span.add_event(EVALUATION_EVENT, verdict_attributes(stage, verdict), timestamp=end_ns)
            if ran - acted and not self._all_verdicts:
                span.set_attribute("lockgate.guards.allowed", sorted(ran - acted))  # on every message
            if trace["status"] >= 500:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, trace.get("error") or None))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Exports what is queued (bounded by the exporter's timeout), then stops the export thread."""
        self._provider.shutdown()


def span_attributes(trace: dict[str, Any], call: BackendCall | None) -> dict[str, Any]:
    """A trace record as GenAI and Lockgate span attributes (pure: tested without a collector).

    Every attribute costs CPU twice (the SDK checks it, the exporter encodes it: about as much as the
    rest of the request's work in the gateway, bench/results/otel.md), so constants and values that
    follow from others are left out, and flags only appear when set."""
    status = trace["status"]
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": trace.get("route") or "unknown",
        "gen_ai.usage.input_tokens": trace.get("prompt_tokens") or 0,
        "gen_ai.usage.output_tokens": trace.get("completion_tokens") or 0,
        "http.response.status_code": status,
        "lockgate.request_id": trace["trace_id"],
        "lockgate.outcome": trace["outcome"],
        "lockgate.overhead_ms": trace["overhead_ms"],
        "lockgate.attempts": len(trace.get("attempts") or []),
    }
    optional = {
        "lockgate.release": trace.get("release"),
        "lockgate.key_id": trace.get("key_id"),
        "lockgate.backend": trace.get("served_by"),
        "lockgate.guard_action": trace.get("guard_action"),
        "lockgate.retries": trace.get("retries") or None,
        "lockgate.fallback_used": trace.get("fallback_used") or None,
        "gen_ai.response.model": _served_model(trace),
    }
    if call is not None:
        optional |= {
            "gen_ai.request.temperature": call.temperature,
            "gen_ai.request.top_p": call.top_p,
            "gen_ai.request.max_tokens": call.max_tokens,
            "gen_ai.request.seed": call.seed,
        }
    attrs |= {k: v for k, v in optional.items() if v is not None}
    if trace.get("finish_reason"):
        attrs["gen_ai.response.finish_reasons"] = [trace["finish_reason"]]
    if status == 200 and trace["outcome"] != "dry_run":
        attrs["gen_ai.response.id"] = f"chatcmpl-{trace['trace_id']}"  # the completion id the client got
    if trace.get("stream"):
        attrs["gen_ai.request.stream"] = True
        if trace.get("ttft_ms") is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = trace["ttft_ms"] / 1000
    if status >= 500:
        attrs["error.type"] = trace.get("error_code") or trace["outcome"]
    return attrs


def verdict_attributes(stage: str, verdict: dict[str, Any]) -> dict[str, Any]:
    """One guard verdict as event attributes: what decided, never what it found in the text."""
    attrs: dict[str, Any] = {
        "gen_ai.evaluation.name": verdict["guard"],
        "gen_ai.evaluation.score.value": float(verdict["score"]),
        "gen_ai.evaluation.score.label": verdict["action"],  # allow, redact, block, ...
        "lockgate.guard.stage": stage,
    }
    labels = sorted({span["label"] for span in verdict.get("spans") or []})
    if labels:
        attrs["lockgate.guard.entities"] = labels  # e.g. EMAIL: what kind, not which
    if verdict.get("message") is not None:
        attrs["lockgate.guard.message_index"] = verdict["message"]
    return attrs


def _served_model(trace: dict[str, Any]) -> str | None:
    """The model of the attempt that answered (a fallback's may differ from the release's)."""
    for attempt in reversed(trace.get("attempts") or []):
        if attempt.get("outcome") == "ok":
            return attempt.get("model")
    return None
