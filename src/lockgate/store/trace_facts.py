"""The few facts about a trace that live analysis counts, kept in columns so they can be summed in SQL.

Rollout analysis and alerts compare releases over windows of thousands of traces many times a
second; parsing every trace body for that would cost more than serving the requests did. So these
facts are derived once, when a trace is stored, by this one function that every store uses.
"""

from __future__ import annotations

from typing import Any

FACT_COLUMNS = ("shadow_of", "release_failed", "guard_violation", "grounding_failed", "prompt_tokens",
                "completion_tokens")

# Outcomes where the release itself did not give an answer (a fallback link or an error did).
_FAILED_OUTCOMES = frozenset({"fallback", "upstream_error", "upstream_timeout", "stream_error", "error"})


def trace_facts(trace: dict[str, Any]) -> tuple[Any, ...]:
    """(shadow_of, release_failed, guard_violation, grounding_failed, prompt_tokens, completion_tokens) for one
    trace.

    release_failed: a server-side failure or a fallback; a client's own error (4xx) is not the
    release's fault. guard_violation: an output guard did anything but allow (the input guards see
    the same traffic whichever release serves it, so they say nothing about the release).
    grounding_failed: the grounding guard found the answer unsupported by its context.
    prompt_tokens, completion_tokens: as the backend reported them (0 when it did not), for cost alerts.
    """
    status = trace.get("status") or 0
    failed = status >= 500 or trace.get("outcome") in _FAILED_OUTCOMES or bool(trace.get("fallback_used"))
    output_verdicts = (trace.get("guards") or {}).get("output") or []
    violation = any(v.get("action") not in (None, "allow") for v in output_verdicts)
    grounding = any(v.get("guard") == "grounding" and v.get("action") not in (None, "allow") for v in output_verdicts)
    return (trace.get("shadow_of"), int(failed), int(violation), int(grounding), int(trace.get("prompt_tokens") or 0),
            int(trace.get("completion_tokens") or 0))
