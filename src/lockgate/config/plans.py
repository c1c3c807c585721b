"""Rollout plans and experiments as declared in `lockgate.yaml`, under a route.

    plans:
      default:
        steps:
          - shadow: {percent: 50, duration_s: 120}
          - canary: {weight: 5}
          - analysis: {duration_s: 300, min_samples: 100}
          - gate: {approver: alice}
          - canary: {weight: 50}
          - analysis: {duration_s: 600}
          - promote: {}
        rollback_when:
          - {metric: error_rate, above: 0.05, window_s: 60}

A plan is a list of steps, each a one-key mapping naming its kind. Blue-green is the plan
`[canary: {weight: 100}, analysis: ..., promote: {}]`, with `lockgate rollout rollback` as the
instant way back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lockgate.config.strict import Strict

RateMetric = Literal[
    "error_rate", "guard_violation_rate", "grounding_failure_rate", "negative_feedback_rate", "live_check_failure_rate"
]
Metric = RateMetric | Literal["p95_latency_ms"]
RATE_METRICS: tuple[str, ...] = RateMetric.__args__  # type: ignore[attr-defined]

# Metrics every request produces; the others (ratings, sampled checks, grounding context) may be too
# sparse to judge, and must not hold a rollout back on their own.
REQUIRED_BY_DEFAULT = frozenset({"error_rate", "p95_latency_ms", "guard_violation_rate"})

# How much worse than stable a candidate may be before a check fails, when a plan does not say.
DEFAULT_MAX_INCREASE = {
    "error_rate": 0.02,
    "guard_violation_rate": 0.05,
    "grounding_failure_rate": 0.05,
    "negative_feedback_rate": 0.10,
    "live_check_failure_rate": 0.05,
}


class MetricCheck(Strict):
    """Candidate against stable on one metric. Rates: at most `max_increase` (absolute) worse.
    p95 latency: at most `max_ratio` times stable's, plus `slack_ms` so that fast routes do not flap."""

    metric: Metric
    max_increase: float | None = Field(default=None, ge=0, le=1)
    max_ratio: float = Field(default=1.5, ge=1)
    slack_ms: float = Field(default=50.0, ge=0)
    required: bool | None = Field(
        default=None,
        description="A required check must be Successful to pass a step; an optional one (feedback, live "
        "checks, grounding by default) can only fail it. None: required for errors, latency and guards.",
    )

    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return self.metric in REQUIRED_BY_DEFAULT

    def tolerance(self) -> float:
        if self.max_increase is not None:
            return self.max_increase
        return DEFAULT_MAX_INCREASE.get(self.metric, 0.0)


DEFAULT_CHECKS: tuple[MetricCheck, ...] = (
    MetricCheck(metric="error_rate"),
    MetricCheck(metric="p95_latency_ms"),
    MetricCheck(metric="guard_violation_rate"),
    MetricCheck(metric="grounding_failure_rate"),
    MetricCheck(metric="negative_feedback_rate"),
    MetricCheck(metric="live_check_failure_rate"),
)


class AbsoluteLimit(Strict):
    """Checked continuously on the candidate alone: crossing it rolls back at once, mid-step."""

    metric: Metric
    above: float = Field(ge=0)
    window_s: float = Field(default=60.0, gt=0, le=86400)
    min_samples: int = Field(default=20, ge=1)


DEFAULT_LIMITS: tuple[AbsoluteLimit, ...] = (AbsoluteLimit(metric="error_rate", above=0.05, window_s=60),)


class ShadowSpec(Strict):
    percent: float = Field(gt=0, le=100, description="Share of requests also sent to the candidate.")
    duration_s: float = Field(default=300, gt=0)
    min_samples: int = Field(default=30, ge=1, description="Shadow answers needed before a verdict.")


class CanarySpec(Strict):
    weight: float = Field(gt=0, le=100, description="Percent of users (or requests) the candidate serves.")


class PauseSpec(Strict):
    duration_s: float | None = Field(default=None, gt=0, description="None: until `lockgate rollout resume`.")


class GateSpec(Strict):
    approver: str = Field(min_length=1, description="Who must approve (`lockgate rollout approve --as NAME`).")
    message: str | None = None


class AnalysisSpec(Strict):
    duration_s: float = Field(default=300, gt=0, description="How long to measure before judging.")
    min_samples: int = Field(default=50, ge=1, description="Requests per release before any verdict.")
    checks: tuple[MetricCheck, ...] | None = Field(default=None, description="None: the plan's checks.")


class PromoteSpec(Strict):
    pass


STEP_KINDS = ("shadow", "canary", "pause", "gate", "analysis", "promote")


class Step(Strict):
    """Exactly one of the fields is set; `kind` names it."""

    shadow: ShadowSpec | None = None
    canary: CanarySpec | None = None
    pause: PauseSpec | None = None
    gate: GateSpec | None = None
    analysis: AnalysisSpec | None = None
    promote: PromoteSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"a step is a mapping with exactly one of: {', '.join(STEP_KINDS)} "
                             "(e.g. `- canary: {weight: 5}`)")
        (kind, spec), = data.items()
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {kind!r}; use one of: {', '.join(STEP_KINDS)}")
        if kind == "canary" and isinstance(spec, int | float):
            spec = {"weight": spec}
        return {kind: spec if spec is not None else {}}

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        kind = self.kind
        if self.shadow:
            return f"shadow {self.shadow.percent:g}% for {self.shadow.duration_s:g}s"
        if self.canary:
            return f"canary {self.canary.weight:g}%"
        if self.pause:
            return f"pause {self.pause.duration_s:g}s" if self.pause.duration_s else "pause until resumed"
        if self.gate:
            return f"gate: approval by {self.gate.approver}"
        if self.analysis:
            return f"analysis for {self.analysis.duration_s:g}s (min {self.analysis.min_samples} per release)"
        return kind


class RolloutPlan(Strict):
    steps: tuple[Step, ...] = Field(min_length=1)
    checks: tuple[MetricCheck, ...] = DEFAULT_CHECKS
    rollback_when: tuple[AbsoluteLimit, ...] = DEFAULT_LIMITS
    live_checks: tuple[dict[str, Any], ...] = Field(
        default=(), description="Suite assertions run on sampled live answers, e.g. {type: not-icontains, value: X}.")
    live_check_sample: int = Field(default=200, ge=1, le=5000, description="Most answers checked per release per tick.")

    @model_validator(mode="after")
    def _ends_in_promote(self) -> RolloutPlan:
        kinds = [s.kind for s in self.steps]
        if "promote" in kinds[:-1]:
            raise ValueError("`promote` ends a plan: it can only be the last step")
        return self


class ExperimentSpec(Strict):
    """A/B/n: fixed weights over several releases of the route, by label; weights sum to 100."""

    arms: dict[str, float] = Field(min_length=2)
    metrics: tuple[Metric, ...] = ("error_rate", "p95_latency_ms", "guard_violation_rate", "negative_feedback_rate")

    @model_validator(mode="after")
    def _weights(self) -> ExperimentSpec:
        total = sum(self.arms.values())
        if any(w <= 0 for w in self.arms.values()) or abs(total - 100) > 1e-6:
            raise ValueError(f"experiment arm weights must be positive and sum to 100 (they sum to {total:g})")
        return self
