"""Where the request path meets the guards: input checks before the call, output checks after it.

`guard_input` runs the release's input policy over the client's messages (and prepares what the
output guards need: the system prompt and its canary, the grounding context, the placeholders for
restoring redacted values). `guard_answer` judges a complete answer and decides what the client
gets: the answer (redacted, placeholders restored), a regenerated one, the release's static
fallback, or a withheld notice with `finish_reason: "content_filter"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lockgate.backends.base import Completion
from lockgate.config.schema import ReleaseSpec, StaticFallback
from lockgate.errors import InvalidRequest
from lockgate.gateway.openai_types import ChatRequest
from lockgate.guards.base import Action, GuardContext
from lockgate.guards.leakage import canary_for
from lockgate.guards.pipeline import GuardResult, GuardSet
from lockgate.guards.redaction import Placeholders
from lockgate.observe import metrics
from lockgate.retrieval import Retrieved, Retriever

DRY_RUN_HEADER = "x-lockgate-dry-run"
GUARD_ACTION_HEADER = "x-lockgate-guard-action"


class GuardBlocked(InvalidRequest):
    code = "guard_blocked"


class GuardHeld(InvalidRequest):
    code = "guard_held"


@dataclass
class GuardedRequest:
    guards: GuardSet
    context: GuardContext
    placeholders: Placeholders
    input: GuardResult
    messages: list[dict[str, Any]]  # the client's messages as they may be sent on
    output: GuardResult | None = None
    regenerations: int = 0


def guard_input(guards: GuardSet, spec: ReleaseSpec, release_hash: str, chat: ChatRequest) -> GuardedRequest:
    messages = [{"role": m.role, "content": m.text()} for m in chat.messages]
    grounding = [m["content"] for m in messages if m["role"] in ("system", "developer", "tool") and m["content"]]
    if chat.lockgate and chat.lockgate.context:
        grounding += chat.lockgate.context
    context = GuardContext(
        system_prompt=spec.system_prompt,
        canary=canary_for(release_hash) if guards.plant_canary and spec.system_prompt else None,
        grounding_context=grounding,
        output_schema=spec.output_schema,
    )
    placeholders = Placeholders()
    checked, result = guards.check_input(messages, context, placeholders)
    return GuardedRequest(guards, context, placeholders, result, checked)


def retrieve_and_ground(guarded: GuardedRequest, retriever: Retriever | None) -> Retrieved | None:
    """The release's knowledge for the last user message, as the input guards left it (redacted values
    are never searched for); what was retrieved becomes grounding context, so the grounding guard
    checks the answer against the facts the model was given."""
    if retriever is None:
        return None
    query = next((m["content"] for m in reversed(guarded.messages) if m["role"] == "user"), "")
    retrieved = retriever.retrieve(query if isinstance(query, str) else "")
    guarded.context.grounding_context.extend(retrieved.texts())
    return retrieved


def input_refusal(result: GuardResult) -> InvalidRequest | None:
    """The error for a request the input guards stopped; names the guard, never its internals."""
    if not result.stops or result.decisive is None:
        return None
    name = result.decisive.guard
    if result.action is Action.HOLD:
        return GuardHeld(f"The request was held for human review by Lockgate's input guard '{name}'.")
    return GuardBlocked(
        f"The request was blocked by Lockgate's input guard '{name}'. Change the request; if you believe "
        "this is a mistake, quote the x-request-id header to the service's operators."
    )


def dry_run_body(guarded: GuardedRequest) -> dict[str, Any]:
    return {
        "object": "lockgate.guard_dry_run",
        "action": guarded.input.action.value,
        "verdicts": guarded.input.as_dicts(),
        "messages": guarded.messages,
    }


def withheld_text(result: GuardResult) -> str:
    name = result.decisive.guard if result.decisive else "output"
    if result.action is Action.HOLD:
        return f"[This answer is held for human review by Lockgate's output guard '{name}'.]"
    return f"[Lockgate withheld this answer: it tripped the output guard '{name}'.]"


@dataclass
class GuardedAnswer:
    text: str
    finish_reason: str
    completion: Completion


async def guard_answer(
    guarded: GuardedRequest,
    spec: ReleaseSpec,
    completion: Completion,
    regenerate: Callable[[], Awaitable[Completion]],
) -> GuardedAnswer:
    """Output guards on a whole answer, regenerating while the policy allows it."""
    guards = guarded.guards
    text, result = guards.check_output(completion.text, guarded.context)
    while result.action is Action.REGENERATE and guarded.regenerations < guards.max_regenerations:
        guarded.regenerations += 1
        completion = await regenerate()
        text, result = guards.check_output(completion.text, guarded.context)
    guarded.output = result
    finish_reason = completion.finish_reason
    if result.action in (Action.REGENERATE, Action.FALLBACK):
        static = static_fallback(spec)
        text, finish_reason = (static, "stop") if static is not None else (withheld_text(result), "content_filter")
    elif result.stops:
        text, finish_reason = withheld_text(result), "content_filter"
    elif guards.restore_placeholders:
        text = guarded.placeholders.restore(text)
    return GuardedAnswer(text, finish_reason, completion)


def static_fallback(spec: ReleaseSpec) -> str | None:
    return next((f.static for f in spec.fallbacks if isinstance(f, StaticFallback)), None)


def combined_action(guarded: GuardedRequest) -> Action:
    worst = guarded.input.action
    if guarded.output is not None and guarded.output.action.severity > worst.severity:
        worst = guarded.output.action
    return worst


def record_metrics(guarded: GuardedRequest, labels: dict[str, str]) -> None:
    for result in (guarded.input, guarded.output):
        if result is None:
            continue
        metrics.GUARD_DURATION.labels(stage=result.stage, **labels).observe(result.duration_s)
        for _, verdict in result.verdicts:
            metrics.GUARD_VERDICTS.labels(
                stage=result.stage, guard=verdict.guard, action=verdict.action.value, **labels
            ).inc()


def trace_fields(guarded: GuardedRequest) -> dict[str, Any]:
    return {
        "guard_action": combined_action(guarded).value,
        "guards": {
            "input": guarded.input.as_dicts(),
            "output": guarded.output.as_dicts() if guarded.output else [],
        },
        "regenerations": guarded.regenerations,
        "redactions": len(guarded.placeholders),
    }
