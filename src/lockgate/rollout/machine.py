"""The rollout state machine: pure functions from (route state, time, measurements) to a new state.

No I/O here, so every transition can be tested directly; `controller` runs `tick` against the store
and `commands` apply operators' actions. Every function returns the new RouteState and the events
that explain it; an event becomes an audit record with its reason and the numbers behind it.

    running --(step completes)--> running (next step) ... --(promote)--> promoted
    running --(analysis Failed | absolute limit crossed)--> rolled_back     (candidate at 0% at once)
    running --(analysis Inconclusive/Error at step end | pause step | operator)--> paused --(resume)--> running
    running --(gate step)--> awaiting_approval --(approve by the named person)--> running
    any active --(abort | rollback by an operator)--> aborted | rolled_back
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from lockgate.config.plans import RolloutPlan, Step
from lockgate.control.state import Rollout, RolloutStatus, RouteState, StepOutcome
from lockgate.rollout.analysis import Analysis, Analyzer
from lockgate.rollout.verdicts import Verdict

HISTORY_KEPT = 20


class RolloutError(Exception):
    """An operator's request that cannot apply to the route's current state; the message says why."""


@dataclass(frozen=True)
class Event:
    action: str  # audit action, e.g. "rollout.step", "rollout.rollback"
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Result = tuple[RouteState, list[Event]]


def plan_of(rollout: Rollout) -> RolloutPlan:
    return RolloutPlan.model_validate(rollout.plan)


def current_step(rollout: Rollout) -> Step | None:
    steps = plan_of(rollout).steps
    return steps[rollout.step_index] if rollout.step_index < len(steps) else None


# -- starting ------------------------------------------------------------------------------------


def start(state: RouteState, *, candidate: int, plan_name: str, plan: RolloutPlan, actor: str,
          now: float | None = None) -> Result:
    now = time.time() if now is None else now
    if state.active_rollout() is not None:
        r = state.rollout
        assert r is not None
        raise RolloutError(f"route {state.route} already has a rollout in progress ({r.id}: {r.status.value}); "
                           f"finish it first with `lockgate rollout promote|abort {state.route}`")
    if candidate == state.stable:
        raise RolloutError(f"{state.route}@{candidate} is already the stable release; choose another candidate")
    if state.kill_switch is not None:
        raise RolloutError(f"the kill switch is on for {state.route}; turn it off first "
                           f"(`lockgate flag set {state.route} kill_switch off`)")
    if state.experiment is not None:
        raise RolloutError(f"experiment {state.experiment.name!r} runs on {state.route}; stop it first")
    rollout = Rollout(
        id=f"ro_{int(now)}_{secrets.token_hex(3)}", route=state.route, candidate=candidate, stable=state.stable,
        plan_name=plan_name, plan=plan.model_dump(mode="json", exclude_none=True), step_started_at=now, started_at=now,
        started_by=actor,
    )
    events = [Event("rollout.start", f"{actor} started rolling out {state.route}@{candidate} over "
                    f"{state.route}@{state.stable} with plan {plan_name!r}",
                    {"rollout": rollout.id, "candidate": candidate, "stable": state.stable,
                     "steps": [s.describe() for s in plan.steps]})]
    return _enter(state.model_copy(update={"rollout": rollout}), now, events)


# -- the clock -----------------------------------------------------------------------------------


def tick(state: RouteState, analyzer: Analyzer, now: float | None = None) -> Result:
    """Advance the route's rollout as far as time and measurements allow."""
    now = time.time() if now is None else now
    rollout = state.active_rollout()
    if rollout is None:
        return state, []
    plan = plan_of(rollout)
    if rollout.canary_weight > 0 or rollout.shadow_percent > 0:
        breaches = analyzer.breaches(state.route, rollout.candidate, plan.rollback_when, now,
                                     since=rollout.started_at)
        if breaches:
            return _end(state, RolloutStatus.ROLLED_BACK, now, "absolute limit crossed: " + breaches[0].describe(),
                        "system", {"breaches": [b.__dict__ for b in breaches]})
    if rollout.status is not RolloutStatus.RUNNING:
        return state, []
    step = current_step(rollout)
    assert step is not None, "a running rollout always has a current step"
    elapsed = now - rollout.step_started_at
    if step.pause is not None:
        if step.pause.duration_s is not None and elapsed >= step.pause.duration_s:
            return _complete(state, now, [], note=f"paused {step.pause.duration_s:g}s")
        return state, []
    if step.shadow is not None:
        spec = step.shadow
        analysis = analyzer.analyse(state.route, rollout.candidate, rollout.stable, plan, since=rollout.step_started_at,
                                    until=now, min_samples=spec.min_samples, shadow=True)
        return _judge(state, analysis, now, step_over=elapsed >= spec.duration_s)
    if step.analysis is not None:
        a = step.analysis
        analysis = analyzer.analyse(state.route, rollout.candidate, rollout.stable, plan, since=rollout.step_started_at,
                                    until=now, min_samples=a.min_samples, checks=a.checks)
        return _judge(state, analysis, now, step_over=elapsed >= a.duration_s)
    return state, []  # canary and promote complete on entry; gates wait for `approve`


def _judge(state: RouteState, analysis: Analysis, now: float, *, step_over: bool) -> Result:
    """A failure ends the rollout as soon as it is certain; the other verdicts wait for the step's end."""
    rollout = state.rollout
    assert rollout is not None
    summary = analysis.as_dict()
    state = state.model_copy(update={"rollout": rollout.model_copy(update={"last_analysis": summary})})
    if analysis.verdict is Verdict.FAILED:
        failed = [m for m in analysis.measurements if m.verdict is Verdict.FAILED]
        reason = "analysis Failed: " + "; ".join(f"{m.metric}: {m.note}" for m in failed)
        return _end(state, RolloutStatus.ROLLED_BACK, now, reason, "system", {"analysis": summary})
    if not step_over:
        return state, []
    if analysis.verdict is Verdict.SUCCESSFUL:
        return _complete(state, now, [], note="analysis Successful", analysis=summary)
    waiting = [m for m in analysis.measurements if m.required and m.verdict is analysis.verdict]
    why = "; ".join(f"{m.metric}: {m.note}" for m in waiting)
    reason = (f"analysis {analysis.verdict.value} at the end of the step ({why}); the candidate keeps its current "
              f"share; resume to measure again, or promote/abort")
    return _pause(state, now, reason, "system", {"analysis": summary})


# -- transitions -----------------------------------------------------------------------------------


def _enter(state: RouteState, now: float, events: list[Event]) -> Result:
    """Apply the current step's entry; steps that complete on entry chain to the next one."""
    rollout = state.rollout
    assert rollout is not None
    step = current_step(rollout)
    if step is None:  # a plan without `promote` ends by promoting after its last step
        return _promote(state, now, events, "system", "the plan's last step completed")
    events.append(Event("rollout.step", f"step {rollout.step_index + 1}: {step.describe()}",
                        {"rollout": rollout.id, "step": rollout.step_index, "kind": step.kind}))
    if step.canary is not None:
        rollout = rollout.model_copy(update={"canary_weight": step.canary.weight, "shadow_percent": 0.0})
        return _complete(state.model_copy(update={"rollout": rollout}), now, events,
                         note=f"candidate weight {step.canary.weight:g}%")
    if step.shadow is not None:
        rollout = rollout.model_copy(update={"shadow_percent": step.shadow.percent})
        return state.model_copy(update={"rollout": rollout}), events
    if step.pause is not None and step.pause.duration_s is None:
        state, more = _pause(state, now, "pause step: waiting for `lockgate rollout resume`", "system", {})
        return state, events + more
    if step.gate is not None:
        rollout = rollout.model_copy(update={"status": RolloutStatus.AWAITING_APPROVAL,
                                             "pause_reason": f"waiting for approval by {step.gate.approver}"})
        return state.model_copy(update={"rollout": rollout}), events
    if step.promote is not None:
        return _promote(state, now, events, "system", "promote step")
    return state, events


def _complete(state: RouteState, now: float, events: list[Event], *, note: str,
              analysis: dict[str, Any] | None = None) -> Result:
    rollout = state.rollout
    assert rollout is not None
    step = current_step(rollout)
    assert step is not None
    done = StepOutcome(index=rollout.step_index, kind=step.kind, started_at=rollout.step_started_at, ended_at=now,
                       result="completed", note=note, analysis=analysis)
    update: dict[str, Any] = {"steps_done": (*rollout.steps_done, done), "step_index": rollout.step_index + 1,
                              "step_started_at": now, "status": RolloutStatus.RUNNING, "pause_reason": None}
    if step.shadow is not None:
        update["shadow_percent"] = 0.0
    events = [*events, Event("rollout.step_completed", f"step {rollout.step_index + 1} ({step.describe()}) completed: "
                             f"{note}", {"rollout": rollout.id, "step": rollout.step_index, "analysis": analysis})]
    return _enter(state.model_copy(update={"rollout": rollout.model_copy(update=update)}), now, events)


def _pause(state: RouteState, now: float, reason: str, actor: str, details: dict[str, Any]) -> Result:
    rollout = state.rollout
    assert rollout is not None
    rollout = rollout.model_copy(update={"status": RolloutStatus.PAUSED, "pause_reason": reason})
    return state.model_copy(update={"rollout": rollout}), [
        Event("rollout.pause", reason, {"rollout": rollout.id, "by": actor, **details})]


def _promote(state: RouteState, now: float, events: list[Event], actor: str, reason: str) -> Result:
    rollout = state.rollout
    assert rollout is not None
    ended = rollout.model_copy(update={"status": RolloutStatus.PROMOTED, "canary_weight": 0.0, "shadow_percent": 0.0,
                                       "ended_at": now, "end_reason": reason, "pause_reason": None})
    new_state = state.model_copy(update={"stable": rollout.candidate, "last_good": rollout.stable, "rollout": ended,
                                         "history": _history(state, ended)})
    return new_state, [*events, Event("rollout.promote",
                                      f"{state.route}@{rollout.candidate} is now stable ({reason}; by {actor})",
                                      {"rollout": rollout.id, "stable": rollout.candidate,
                                       "previous": rollout.stable})]


def _end(state: RouteState, status: RolloutStatus, now: float, reason: str, actor: str,
         details: dict[str, Any]) -> Result:
    rollout = state.rollout
    assert rollout is not None
    ended = rollout.model_copy(update={"status": status, "canary_weight": 0.0, "shadow_percent": 0.0,
                                       "ended_at": now, "end_reason": reason, "pause_reason": None})
    action = "rollout.rollback" if status is RolloutStatus.ROLLED_BACK else "rollout.abort"
    return state.model_copy(update={"rollout": ended, "history": _history(state, ended)}), [
        Event(action, reason, {"rollout": rollout.id, "by": actor, "candidate": rollout.candidate,
                               "weight_before": rollout.canary_weight, **details})]


def _history(state: RouteState, ended: Rollout) -> tuple[dict[str, Any], ...]:
    entry = {"id": ended.id, "candidate": ended.candidate, "stable": ended.stable, "status": ended.status.value,
             "reason": ended.end_reason, "started_at": ended.started_at, "ended_at": ended.ended_at}
    return (*state.history, entry)[-HISTORY_KEPT:]


# -- operators -------------------------------------------------------------------------------------


def _require_active(state: RouteState) -> Rollout:
    rollout = state.active_rollout()
    if rollout is None:
        raise RolloutError(f"route {state.route} has no rollout in progress (`lockgate rollout start {state.route}`)")
    return rollout


def pause(state: RouteState, *, actor: str, reason: str = "", now: float | None = None) -> Result:
    rollout = _require_active(state)
    if rollout.status is not RolloutStatus.RUNNING:
        raise RolloutError(f"the rollout is {rollout.status.value}, not running: nothing to pause")
    return _pause(state, time.time() if now is None else now, f"paused by {actor}" + (f": {reason}" if reason else ""),
                  actor, {})


def resume(state: RouteState, *, actor: str, now: float | None = None) -> Result:
    """Resumes a paused rollout. A pause step completes; an analysis or shadow step measures afresh."""
    now = time.time() if now is None else now
    rollout = _require_active(state)
    if rollout.status is RolloutStatus.AWAITING_APPROVAL:
        step = current_step(rollout)
        approver = step.gate.approver if step is not None and step.gate is not None else "?"
        raise RolloutError(f"the rollout waits for approval by {approver}, not for resume "
                           f"(`lockgate rollout approve {state.route} --as {approver}`)")
    if rollout.status is not RolloutStatus.PAUSED:
        raise RolloutError("the rollout is running, not paused")
    events = [Event("rollout.resume", f"resumed by {actor}", {"rollout": rollout.id, "by": actor})]
    step = current_step(rollout)
    resumed = rollout.model_copy(update={"status": RolloutStatus.RUNNING, "pause_reason": None,
                                         "step_started_at": now})
    state = state.model_copy(update={"rollout": resumed})
    if step is not None and step.pause is not None and step.pause.duration_s is None:
        return _complete(state, now, events, note=f"resumed by {actor}")
    return state, events


def approve(state: RouteState, *, actor: str, now: float | None = None) -> Result:
    now = time.time() if now is None else now
    rollout = _require_active(state)
    step = current_step(rollout)
    if rollout.status is not RolloutStatus.AWAITING_APPROVAL or step is None or step.gate is None:
        raise RolloutError(f"the rollout is {rollout.status.value}; it is not waiting at a gate")
    if actor != step.gate.approver:
        raise RolloutError(f"this gate needs approval by {step.gate.approver}, not {actor}")
    rollout = rollout.model_copy(update={"approvals": (*rollout.approvals, {"by": actor, "at": now,
                                                                            "step": rollout.step_index})})
    events = [Event("rollout.approve", f"approved by {actor}", {"rollout": rollout.id, "by": actor})]
    return _complete(state.model_copy(update={"rollout": rollout}), now, events, note=f"approved by {actor}")


def promote(state: RouteState, *, actor: str, now: float | None = None) -> Result:
    rollout = _require_active(state)
    return _promote(state, time.time() if now is None else now, [], actor,
                    f"promoted by {actor} at step {rollout.step_index + 1}")


def abort(state: RouteState, *, actor: str, reason: str = "", now: float | None = None) -> Result:
    _require_active(state)
    return _end(state, RolloutStatus.ABORTED, time.time() if now is None else now,
                f"aborted by {actor}" + (f": {reason}" if reason else ""), actor, {})


def rollback(state: RouteState, *, actor: str, reason: str = "", now: float | None = None) -> Result:
    _require_active(state)
    return _end(state, RolloutStatus.ROLLED_BACK, time.time() if now is None else now,
                f"rolled back by {actor}" + (f": {reason}" if reason else ""), actor, {})
