"""A release's guard policy: which guards run on input and on output, their thresholds and actions.

Declared in `lockgate.yaml` under a release's `guards:`; when a release names none, the default
policy applies (safe and fast: Unicode hygiene, limits, secrets, PII redaction with restoration and
injection blocking on input; secret and PII leakage and system-prompt leakage on output).
`guards: {input: [], output: []}` turns guards off explicitly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lockgate.guards.base import Action, Guard

GuardName = Literal[
    "unicode", "limits", "secrets", "pii", "injection", "banned",
    "json_schema", "system_prompt_leak", "refusal", "grounding",
]
ActionName = Literal["allow", "redact", "block", "regenerate", "fallback", "hold"]

INPUT_GUARDS = frozenset({"unicode", "limits", "secrets", "pii", "injection", "banned"})
OUTPUT_GUARDS = frozenset({"secrets", "pii", "banned", "json_schema", "system_prompt_leak", "refusal", "grounding"})
INPUT_ACTIONS = frozenset({"allow", "redact", "block", "hold"})
# Options each guard understands; anything else is a configuration error, not silently ignored.
OPTIONS: dict[str, frozenset[str]] = {
    "unicode": frozenset({"mixed_script_action"}),
    "limits": frozenset({"max_chars", "max_tokens", "max_encoded_chars"}),
    "secrets": frozenset(),
    "pii": frozenset({"entities", "restore"}),
    "injection": frozenset({"threshold"}),
    "banned": frozenset({"substrings", "topics"}),
    "json_schema": frozenset({"max_regenerations"}),
    "system_prompt_leak": frozenset({"threshold"}),
    "refusal": frozenset(),
    "grounding": frozenset({"min_support"}),
}


class GuardRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    guard: GuardName
    action: ActionName | None = Field(default=None, description="None: the guard's own default action.")
    threshold: float | None = Field(default=None, ge=0, le=1)
    entities: list[str] | None = None
    restore: bool | None = None
    max_chars: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_encoded_chars: int | None = Field(default=None, ge=8)
    substrings: list[str] | None = None
    topics: dict[str, list[str]] | None = None
    max_regenerations: int | None = Field(default=None, ge=0, le=5)
    min_support: float | None = Field(default=None, ge=0, le=1)
    mixed_script_action: ActionName | None = None

    @model_validator(mode="after")
    def _options_fit_the_guard(self) -> GuardRule:
        given = {k for k in self.model_fields_set if k not in ("guard", "action")}
        unknown = given - OPTIONS[self.guard]
        if unknown:
            allowed = ", ".join(sorted(OPTIONS[self.guard])) or "none"
            raise ValueError(
                f"guard '{self.guard}' has no option(s) {', '.join(sorted(unknown))}; its options: {allowed}"
            )
        return self

    def option(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name)
        return default if value is None else value


class GuardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: list[GuardRule] = Field(default_factory=list)
    output: list[GuardRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _guards_fit_their_stage(self) -> GuardPolicy:
        if any(rule.guard == "unicode" for rule in self.input[1:]):
            raise ValueError("input: `unicode` must come first, so every other guard sees the cleaned text")
        for i, rule in enumerate(self.input):
            if rule.guard not in INPUT_GUARDS:
                raise ValueError(f"input.{i}: '{rule.guard}' checks answers; put it under `output:`")
            if rule.action is not None and rule.action not in INPUT_ACTIONS:
                raise ValueError(f"input.{i}: action '{rule.action}' needs an answer; on input use "
                                 f"{', '.join(sorted(INPUT_ACTIONS))}")
        for i, rule in enumerate(self.output):
            if rule.guard not in OUTPUT_GUARDS:
                raise ValueError(f"output.{i}: '{rule.guard}' checks requests; put it under `input:`")
        return self


DEFAULT_POLICY = GuardPolicy(
    input=[
        GuardRule(guard="unicode"),
        GuardRule(guard="limits"),
        GuardRule(guard="secrets"),
        GuardRule(guard="pii", restore=True),
        GuardRule(guard="injection"),
    ],
    output=[
        GuardRule(guard="secrets", action="redact"),
        GuardRule(guard="pii", action="redact"),
        GuardRule(guard="system_prompt_leak"),
        GuardRule(guard="refusal"),
    ],
)


def build_guard(rule: GuardRule, *, output_schema: dict[str, Any] | None = None) -> Guard:
    """The guard object for a rule. Imports are local so unused guards cost nothing at start."""
    action = Action(rule.action) if rule.action else None
    kwargs: dict[str, Any] = {"action": action} if action else {}
    if rule.guard == "unicode":
        from lockgate.guards.unicode import UnicodeGuard

        if rule.mixed_script_action:
            kwargs["mixed_script_action"] = Action(rule.mixed_script_action)
        return UnicodeGuard(**kwargs)
    if rule.guard == "limits":
        from lockgate.guards.limits import LimitsGuard

        for name in ("max_chars", "max_tokens", "max_encoded_chars"):
            if getattr(rule, name) is not None:
                kwargs[name] = getattr(rule, name)
        return LimitsGuard(**kwargs)
    if rule.guard == "secrets":
        from lockgate.guards.secrets import SecretsGuard

        return SecretsGuard(**kwargs)
    if rule.guard == "pii":
        from lockgate.guards.pii import PiiGuard

        if rule.entities:
            kwargs["entities"] = frozenset(e.upper() for e in rule.entities)
        return PiiGuard(**kwargs)
    if rule.guard == "injection":
        from lockgate.guards.injection import InjectionGuard

        if rule.threshold is not None:
            kwargs["threshold"] = rule.threshold
        return InjectionGuard(**kwargs)
    if rule.guard == "banned":
        from lockgate.guards.banned import BannedGuard

        return BannedGuard(substrings=rule.substrings, topics=rule.topics, **kwargs)
    if rule.guard == "json_schema":
        from lockgate.guards.json_output import JsonSchemaGuard

        return JsonSchemaGuard(schema=output_schema, **kwargs)
    if rule.guard == "system_prompt_leak":
        from lockgate.guards.leakage import SystemPromptLeakGuard

        if rule.threshold is not None:
            kwargs["threshold"] = rule.threshold
        return SystemPromptLeakGuard(**kwargs)
    if rule.guard == "refusal":
        from lockgate.guards.refusal import RefusalGuard

        return RefusalGuard(**kwargs)
    from lockgate.guards.grounding import GroundingGuard

    if rule.min_support is not None:
        kwargs["min_support"] = rule.min_support
    return GroundingGuard(**kwargs)
