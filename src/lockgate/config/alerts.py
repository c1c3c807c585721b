"""Alert rules as declared in `lockgate.yaml`, under the top-level `alerts:` list.

    alerts:
      - name: echo-errors
        route: echo
        kind: threshold
        metric: error_rate
        above: 0.05
        window_s: 900
        actions:
          - webhook: {url: https://hooks.example.com/lockgate, retries: 3}
      - name: echo-availability
        route: echo
        kind: burn_rate
        slo: {objective: 0.99, metric: error_rate}
        actions:
          - rollback: {}
          - incident: {severity: critical}

A threshold rule compares one metric of the route's served traffic over a trailing window with a
limit. A burn-rate rule watches how fast the route spends its error budget (1 - objective): it
fires when both the long and the short window of a pair burn faster than the pair's factor
(docs/alerts.md has the arithmetic). Actions are one-key mappings, like plan steps.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from lockgate.config.strict import Strict

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")  # most severe first

# Rates of the route's served requests, read from the trace facts the store keeps in columns.
RateMetric = Literal["error_rate", "guard_violation_rate", "grounding_failure_rate"]
RATE_METRICS: tuple[str, ...] = RateMetric.__args__  # type: ignore[attr-defined]
ThresholdMetric = RateMetric | Literal["p95_latency_ms", "complaints", "cost_ratio", "mean_confidence"]
THRESHOLD_METRICS: tuple[str, ...] = (*RATE_METRICS, "p95_latency_ms", "complaints", "cost_ratio", "mean_confidence")


class Price(Strict):
    """What a token costs, for `cost_ratio` in money rather than tokens (any currency: only ratios are read)."""

    prompt_per_1k: float = Field(ge=0, description="Price of 1000 prompt tokens.")
    completion_per_1k: float = Field(ge=0, description="Price of 1000 completion tokens.")


class WebhookAction(Strict):
    url: str = Field(pattern=r"^https?://[^/\s]+", description="Receives a JSON POST on firing and on resolve.")
    retries: int = Field(default=3, ge=0, le=20, description="Attempts after the first one, with backoff.")
    backoff_s: float = Field(default=1.0, gt=0, le=300, description="Wait before the first retry; doubles each time.")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="Per attempt.")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every POST (e.g. a token).")


class RollbackAction(Strict):
    """Roll back the route's rollout in progress; a no-op (noted) when there is none."""


class KillSwitchAction(Strict):
    mode: Literal["last_good", "static"] = "last_good"
    message: str | None = Field(default=None, min_length=1, description="The static answer (mode: static).")

    @model_validator(mode="after")
    def _static_has_message(self) -> KillSwitchAction:
        if self.mode == "static" and not self.message:
            raise ValueError("a static kill switch needs the answer to give: add `message: ...`")
        return self


class IncidentAction(Strict):
    severity: Severity | None = Field(default=None, description="None: the alert's severity when it fired.")
    title: str | None = Field(default=None, description="None: a title naming the alert and the route.")


ACTION_KINDS = ("webhook", "rollback", "kill_switch", "incident")


class Action(Strict):
    """Exactly one of the fields is set; `kind` names it."""

    webhook: WebhookAction | None = None
    rollback: RollbackAction | None = None
    kill_switch: KillSwitchAction | None = None
    incident: IncidentAction | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"an action is a mapping with exactly one of: {', '.join(ACTION_KINDS)} "
                             "(e.g. `- rollback: {}` or `- webhook: {url: https://...}`)")
        (kind, spec), = data.items()
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown action {kind!r}; use one of: {', '.join(ACTION_KINDS)}")
        return {kind: spec if spec is not None else {}}

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)


class RuleBase(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Unique among alerts; names its state and notices.")
    route: str = Field(description="The route whose served traffic the rule reads.")
    description: str | None = None
    runbook: str | None = Field(default=None, description="A link or a line for the on-call; sent with notices.")
    min_samples: int = Field(default=20, ge=1, description="Requests a window needs before it is judged; "
                             "fewer is `no data`, never OK.")
    for_s: float = Field(default=0.0, ge=0, le=86400, description="The condition must hold this long to fire.")
    evaluate_every_s: float = Field(default=10.0, ge=0.1, le=3600, description="How often the rule is evaluated.")
    actions: tuple[Action, ...] = Field(default=(), description="Run when the alert fires (webhooks: also on resolve).")


class ThresholdRule(RuleBase):
    kind: Literal["threshold"]
    metric: ThresholdMetric
    above: float | None = Field(default=None, description="Fires when the value is greater than this.")
    below: float | None = Field(default=None, description="Fires when the value is less than this.")
    window_s: float = Field(default=300.0, gt=0, le=30 * 86400, description="Trailing window the value is read over.")
    severity: Severity = "high"
    baseline_s: float = Field(default=86400.0, gt=0, le=90 * 86400,
                              description="cost_ratio: the baseline is this long, just before the window.")
    per_request: bool = Field(default=False, description="cost_ratio: compare cost per request, not cost per second.")
    price: Price | None = Field(default=None, description="cost_ratio: cost in money; None counts tokens.")

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"alert {self.name!r}: give exactly one of `above:` or `below:`")
        limit = self.above if self.above is not None else self.below
        assert limit is not None
        if self.metric in RATE_METRICS and not 0 <= limit <= 1:
            raise ValueError(f"alert {self.name!r}: {self.metric} is a fraction between 0 and 1 "
                             f"(5% is 0.05), not {limit:g}")
        cost_only = {"price": self.price is not None, "per_request": self.per_request,
                     "baseline_s": "baseline_s" in self.model_fields_set}
        misplaced = [key for key, given in cost_only.items() if given and self.metric != "cost_ratio"]
        if misplaced:
            raise ValueError(f"alert {self.name!r}: {', '.join(misplaced)} set for metric {self.metric}, but "
                             "only metric cost_ratio reads them; remove them")
        return self

    @property
    def longest_window_s(self) -> float:
        return self.window_s + (self.baseline_s if self.metric == "cost_ratio" else 0.0)


class Slo(Strict):
    objective: float = Field(gt=0, lt=1, description="Share of good requests promised, e.g. 0.99.")
    metric: RateMetric = Field(default="error_rate", description="What makes a request bad.")

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective


class BurnWindow(Strict):
    """Both windows must burn faster than `factor` times the budget: the long one proves it matters,
    the short one that it is still happening (so the alert resolves soon after it stops)."""

    long_s: float = Field(gt=0, le=30 * 86400)
    short_s: float = Field(gt=0, le=30 * 86400)
    factor: float = Field(gt=0, description="Burn rate: how many times faster than the budget allows.")
    severity: Severity

    @model_validator(mode="after")
    def _short_is_shorter(self) -> BurnWindow:
        if self.short_s >= self.long_s:
            raise ValueError(f"short_s ({self.short_s:g}) must be shorter than long_s ({self.long_s:g}); "
                             "the SRE workbook uses 1/12 of it")
        return self

    def describe(self) -> str:
        return f"{describe_duration(self.long_s)}/{describe_duration(self.short_s)} at {self.factor:g}x"


# The Google SRE workbook's pairs: 2% of a 30-day budget in an hour pages, 5% in six hours opens a ticket.
DEFAULT_BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(long_s=3600, short_s=300, factor=14.4, severity="critical"),
    BurnWindow(long_s=21600, short_s=1800, factor=6, severity="medium"),
)


class BurnRateRule(RuleBase):
    kind: Literal["burn_rate"]
    slo: Slo
    windows: tuple[BurnWindow, ...] = Field(default=DEFAULT_BURN_WINDOWS, description="None given: the defaults.")

    @model_validator(mode="after")
    def _has_windows(self) -> BurnRateRule:
        if not self.windows:
            raise ValueError(f"alert {self.name!r}: `windows:` is empty; leave it out for the SRE workbook's pairs "
                             "(1h/5m at 14.4x, 6h/30m at 6x)")
        return self

    @property
    def longest_window_s(self) -> float:
        return max(w.long_s for w in self.windows)


def _rule_kind(data: Any) -> str | None:
    kind = data.get("kind") if isinstance(data, dict) else getattr(data, "kind", None)
    return {"threshold": "ThresholdRule", "burn_rate": "BurnRateRule"}.get(kind)  # type: ignore[arg-type]


# Tags named like the classes: the config loader leaves them out of the key paths it reports.
AlertRule = Annotated[
    Annotated[ThresholdRule, Tag("ThresholdRule")] | Annotated[BurnRateRule, Tag("BurnRateRule")],
    Discriminator(_rule_kind, custom_error_type="alert_kind",
                  custom_error_message="set `kind:` to `threshold` (a metric over a window) or `burn_rate` (an SLO)"),
]


def _unique_names(rules: tuple[ThresholdRule | BurnRateRule, ...]) -> tuple[ThresholdRule | BurnRateRule, ...]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"two alerts are named {rule.name!r}; alert names must be unique")
        seen.add(rule.name)
    return rules


AlertRules = Annotated[tuple[AlertRule, ...], AfterValidator(_unique_names)]


def rule_severity(rule: ThresholdRule | BurnRateRule) -> str:
    """The most severe level the rule can fire at."""
    levels = [rule.severity] if isinstance(rule, ThresholdRule) else [w.severity for w in rule.windows]
    return min(levels, key=SEVERITIES.index)


def reference_problems(rules: tuple[ThresholdRule | BurnRateRule, ...], routes: set[str]) -> list[tuple[str, str]]:
    """(key path, message) for each rule that names a route the configuration does not declare."""
    known = ", ".join(sorted(routes)) or "none declared"
    return [(f"alerts.{i}.route", f"unknown route '{rule.route}'; use one of: {known}")
            for i, rule in enumerate(rules) if rule.route not in routes]


def describe_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
