"""`lockgate rollout status`: what is happening on a route, readable at a glance."""

from __future__ import annotations

import time
from typing import Any

from lockgate.config.plans import RATE_METRICS
from lockgate.control.state import Rollout, RolloutStatus, RouteState
from lockgate.rollout.machine import current_step, plan_of


def route_summary(state: RouteState) -> str:
    """One line: what serves the route."""
    route = state.route
    parts = [f"stable {route}@{state.stable}"]
    rollout = state.active_rollout()
    if state.kill_switch is not None:
        k = state.kill_switch
        parts.insert(0, "KILL SWITCH ON (" + ("static answer" if k.mode == "static"
                                              else f"serving {route}@{state.last_good or state.stable}") + ")")
    if rollout is not None:
        shadow = f", shadow {rollout.shadow_percent:g}%" if rollout.shadow_percent else ""
        parts.append(f"rollout of {route}@{rollout.candidate} {rollout.status.value}, candidate "
                     f"{rollout.canary_weight:g}%{shadow}")
    if state.experiment is not None:
        arms = ", ".join(f"{route}@{v} {w:g}%" for v, w in sorted(state.experiment.arms.items()))
        parts.append(f"experiment {state.experiment.name}: {arms}")
    return "; ".join(parts)


def _ago(ts: float, now: float) -> str:
    return _duration(now - ts) + " ago"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if metric in RATE_METRICS else f"{value:.0f} ms"


def render(state: RouteState, now: float | None = None) -> str:
    now = time.time() if now is None else now
    route = state.route
    lines = [f"route        {route}", f"serving      {route_summary(state)}"]
    kill = state.kill_switch
    lines.append("kill switch  " + ("off" if kill is None else
                                    f"ON ({kill.mode}) since {_ago(kill.set_at, now)} by {kill.set_by}"
                                    + (f": {kill.reason}" if kill.reason else "")))
    rollout = state.rollout
    if rollout is None:
        lines.append("rollout      none (start one with `lockgate rollout start " + route + " --candidate LABEL`)")
        return "\n".join(lines)
    lines += _rollout_lines(rollout, now)
    return "\n".join(lines)


def _rollout_lines(rollout: Rollout, now: float) -> list[str]:
    route = rollout.route
    plan = plan_of(rollout)
    lines = [
        f"rollout      {rollout.id}: {route}@{rollout.candidate} over {route}@{rollout.stable}, plan "
        f"'{rollout.plan_name}', started {_ago(rollout.started_at, now)} by {rollout.started_by}",
        f"status       {rollout.status.value.upper()}" + (f" — {rollout.pause_reason}" if rollout.pause_reason else ""),
    ]
    if not rollout.status.active:
        lines.append(f"ended        {_ago(rollout.ended_at or now, now)}: {rollout.end_reason}")
    else:
        lines.append(f"traffic      candidate serves {rollout.canary_weight:g}% of users; "
                     f"shadow copies of {rollout.shadow_percent:g}% of requests")
    lines.append("steps")
    done = {s.index: s for s in rollout.steps_done}
    for index, step in enumerate(plan.steps):
        if index in done:
            mark, note = "✓", f" — {done[index].note}"
        elif index == rollout.step_index and rollout.status.active:
            mark, note = "▶", f" — {_duration(now - rollout.step_started_at)} in"
        else:
            mark, note = " ", ""
        lines.append(f"  {mark} {index + 1}. {step.describe()}{note}")
    if rollout.last_analysis:
        lines += _analysis_lines(rollout.last_analysis)
    lines.append("next         " + next_decision(rollout, now))
    return lines


def _analysis_lines(analysis: dict[str, Any]) -> list[str]:
    window = _duration(analysis["until"] - analysis["since"])
    lines = [f"analysis     {analysis['verdict']} over the last {window}",
             f"  {'metric':<36}{'candidate':>12}{'stable':>12}{'n cand':>8}{'n stable':>10}  verdict       note"]
    for m in analysis["measurements"]:
        metric = m["metric"] + ("" if m["required"] else " (optional)")
        lines.append(f"  {metric:<36}{_value(m['metric'], m['candidate']):>12}{_value(m['metric'], m['stable']):>12}"
                     f"{m['candidate_n']:>8}{m['stable_n']:>10}  {m['verdict']:<13} {m['note']}")
    return lines


def next_decision(rollout: Rollout, now: float) -> str:
    """What will happen next, and on what condition: the line an operator reads first."""
    if not rollout.status.active:
        return "nothing: the rollout has ended"
    step = current_step(rollout)
    if step is None:
        return "promote"
    elapsed = now - rollout.step_started_at
    if rollout.status is RolloutStatus.AWAITING_APPROVAL and step.gate is not None:
        return f"waits for `lockgate rollout approve {rollout.route} --as {step.gate.approver}`"
    if rollout.status is RolloutStatus.PAUSED:
        return f"waits for `lockgate rollout resume {rollout.route}` (or promote / abort / rollback)"
    if step.pause is not None and step.pause.duration_s is not None:
        return f"continues in {_duration(step.pause.duration_s - elapsed)}"
    spec = step.analysis or step.shadow
    if spec is not None:
        left = _duration(spec.duration_s - elapsed)
        return (f"judged in {left}: Successful → next step; Inconclusive or Error → pause; "
                "a Failed check or a crossed limit rolls back at once")
    return "advances on the next tick"


def as_json(state: RouteState, now: float | None = None) -> dict[str, Any]:
    body = state.to_json()
    if state.rollout is not None:
        body["next"] = next_decision(state.rollout, time.time() if now is None else now)
    return body
