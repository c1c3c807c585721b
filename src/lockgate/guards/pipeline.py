"""Runs a release's guard policy over a request's messages and over the model's answer.

Guards decide, this module acts: it rewrites text (Unicode hygiene), turns REDACT spans into
placeholders (input) or masks (output), and combines every verdict into one action, the most
severe one (block > hold > fallback > regenerate > redact > allow). It knows nothing of HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lockgate.guards.base import Action, Guard, GuardContext, Span, Verdict
from lockgate.guards.policy import GuardPolicy, GuardRule, build_guard
from lockgate.guards.redaction import Placeholders, mask

# Roles whose content comes from the client or its tools; the model's own earlier turns are not
# re-checked on input (they were checked as output when they were produced).
GUARDED_ROLES = frozenset({"user", "tool", "system", "developer"})
REDACTING_GUARDS = frozenset({"pii", "secrets", "banned"})


@dataclass
class GuardResult:
    stage: str
    action: Action = Action.ALLOW
    verdicts: list[tuple[int | None, Verdict]] = field(default_factory=list)
    decisive: Verdict | None = None
    duration_s: float = 0.0

    def add(self, verdict: Verdict, message_index: int | None = None) -> None:
        self.verdicts.append((message_index, verdict))
        if verdict.action.severity > self.action.severity:
            self.action = verdict.action
            self.decisive = verdict

    @property
    def stops(self) -> bool:
        """True when the request or answer must not go on as it is."""
        return self.action.severity > Action.REDACT.severity

    def as_dicts(self) -> list[dict[str, Any]]:
        out = []
        for index, verdict in self.verdicts:
            item = verdict.as_dict()
            if index is not None:
                item["message"] = index
            out.append(item)
        return out


@dataclass(frozen=True)
class _Armed:
    rule: GuardRule
    guard: Guard


class GuardSet:
    """One release's guards, built once and reused for every request to that release."""

    def __init__(self, policy: GuardPolicy, *, output_schema: dict[str, Any] | None = None) -> None:
        self.policy = policy
        self.output_schema = output_schema
        self._input = [_Armed(r, build_guard(r)) for r in policy.input]
        self._output = [_Armed(r, build_guard(r, output_schema=output_schema)) for r in policy.output]
        self.restore_placeholders = any(a.rule.guard == "pii" and a.rule.restore for a in self._input)
        self.plant_canary = any(a.rule.guard == "system_prompt_leak" for a in self._output)
        # A JSON document cannot be judged until it is complete: such answers are not streamed early.
        self.needs_whole_answer = any(a.rule.guard == "json_schema" for a in self._output)
        self.max_regenerations = max(
            (a.rule.option("max_regenerations", 2) for a in self._output if a.rule.guard == "json_schema"), default=0
        )

    def warm_up(self) -> None:
        """Runs every guard once, so models and caches load before traffic, not on a user's request."""
        self.check_input([{"role": "user", "content": "warm-up"}], GuardContext(), Placeholders())
        self.check_output("warm-up", GuardContext())

    @property
    def has_output_guards(self) -> bool:
        return bool(self._output)

    def check_input(
        self, messages: list[dict[str, Any]], context: GuardContext, placeholders: Placeholders
    ) -> tuple[list[dict[str, Any]], GuardResult]:
        """Checks every client-supplied message; returns the messages as they may be sent on."""
        started = time.perf_counter()
        result = GuardResult("input")
        checked = []
        for index, message in enumerate(messages):
            text = message.get("content") or ""
            if message.get("role") not in GUARDED_ROLES or not text:
                checked.append(message)
                continue
            text = self._run(self._input, text, context, result, index, placeholders)
            checked.append({**message, "content": text})
        result.duration_s = time.perf_counter() - started
        return checked, result

    def check_output(self, text: str, context: GuardContext) -> tuple[str, GuardResult]:
        started = time.perf_counter()
        result = GuardResult("output")
        if text:
            text = self._run(self._output, text, context, result, None, None)
        result.duration_s = time.perf_counter() - started
        return text, result

    @staticmethod
    def _run(
        armed: list[_Armed],
        text: str,
        context: GuardContext,
        result: GuardResult,
        index: int | None,
        placeholders: Placeholders | None,
    ) -> str:
        to_redact: list[Span] = []
        for item in armed:
            try:
                verdict = item.guard.check(text, context)
            except Exception as exc:  # noqa: BLE001 - a broken guard must fail closed, visibly
                verdict = Verdict(item.guard.name, Action.BLOCK, 1.0, f"the guard failed: {type(exc).__name__}")
            result.add(verdict, index)
            if verdict.text is not None and verdict.action is Action.REDACT:
                # A rewriting guard (Unicode hygiene): later guards see the cleaned text, and spans
                # found so far refer to the old text, so none may be pending.
                text = verdict.text
            elif verdict.action is Action.REDACT and item.rule.guard in REDACTING_GUARDS:
                to_redact.extend(verdict.spans)
        if to_redact:
            text = placeholders.redact(text, to_redact) if placeholders is not None else mask(text, to_redact)
        return text
