"""The rollout state machine, step by step, against real traces in a real store."""

from __future__ import annotations

import pytest

from lockgate.config.plans import RolloutPlan
from lockgate.control import commands
from lockgate.control.state import RolloutStatus, RouteState
from lockgate.rollout import machine
from lockgate.rollout.analysis import Analyzer
from lockgate.rollout.machine import RolloutError
from tests.harness import store_at, unreachable_store
from tests.rollout_helpers import add_traffic

T0 = 2_000_000.0


@pytest.fixture
def store(tmp_path):
    s = store_at(tmp_path / "db.sqlite3")
    s.migrate()
    return s


def plan(*steps, **extra) -> RolloutPlan:
    return RolloutPlan.model_validate({"steps": list(steps), **extra})


def started(p: RolloutPlan, now: float = T0) -> RouteState:
    state, events = machine.start(RouteState(route="r", stable=1), candidate=2, plan_name="p", plan=p, actor="ann",
                                  now=now)
    assert events[0].action == "rollout.start"
    return state


def test_canary_then_analysis_then_promote(store):
    p = plan({"canary": 10}, {"analysis": {"duration_s": 60, "min_samples": 100}}, {"promote": {}})
    state = started(p)
    r = state.rollout
    assert (r.status, r.step_index, r.canary_weight) == (RolloutStatus.RUNNING, 1, 10)  # canary completes on entry
    add_traffic(store, "r", 1, 900, ts=T0 + 1, spread_s=30)
    add_traffic(store, "r", 2, 150, ts=T0 + 1, spread_s=30)
    state, events = machine.tick(state, Analyzer(store), now=T0 + 30)
    assert state.rollout.step_index == 1 and not events  # still measuring: no verdict before the step ends
    assert state.rollout.last_analysis["verdict"] == "Successful"
    state, events = machine.tick(state, Analyzer(store), now=T0 + 61)
    assert state.rollout.status is RolloutStatus.PROMOTED
    assert (state.stable, state.last_good) == (2, 1)
    assert [e.action for e in events] == ["rollout.step_completed", "rollout.step", "rollout.promote"]
    assert state.history[-1]["status"] == "promoted"


def test_failed_analysis_rolls_back_at_once(store):
    p = plan({"canary": 20}, {"analysis": {"duration_s": 600, "min_samples": 50}}, {"promote": {}})
    state = started(p)
    # 4% errors: under the 5% absolute limit, but clearly worse than stable's 0.2%.
    add_traffic(store, "r", 1, 1000, ts=T0 + 1, failed=2)
    add_traffic(store, "r", 2, 400, ts=T0 + 1, failed=16)
    state, events = machine.tick(state, Analyzer(store), now=T0 + 5)  # long before the step's end
    assert state.rollout.status is RolloutStatus.ROLLED_BACK
    assert state.rollout.canary_weight == 0 and state.stable == 1
    assert events[-1].action == "rollout.rollback" and "error_rate" in events[-1].reason
    assert events[-1].details["analysis"]["verdict"] == "Failed"  # the numbers behind the decision


def test_absolute_limit_rolls_back_even_while_paused(store):
    p = plan({"canary": 5}, {"pause": {}}, {"promote": {}})
    state = started(p)
    assert state.rollout.status is RolloutStatus.PAUSED
    add_traffic(store, "r", 2, 40, ts=T0 + 1, failed=10)
    state, events = machine.tick(state, Analyzer(store), now=T0 + 3)
    assert state.rollout.status is RolloutStatus.ROLLED_BACK
    assert "absolute limit" in state.rollout.end_reason


def test_too_little_traffic_pauses_and_never_promotes(store):
    p = plan({"canary": 1}, {"analysis": {"duration_s": 60, "min_samples": 100}}, {"promote": {}})
    state = started(p)
    add_traffic(store, "r", 1, 500, ts=T0 + 1)
    add_traffic(store, "r", 2, 5, ts=T0 + 1)
    state, events = machine.tick(state, Analyzer(store), now=T0 + 61)
    assert state.rollout.status is RolloutStatus.PAUSED
    assert "Inconclusive" in state.rollout.pause_reason and state.stable == 1
    assert state.rollout.canary_weight == 1  # the candidate keeps its share while paused
    # Resuming measures afresh from the resume time.
    state, _ = machine.resume(state, actor="ann", now=T0 + 100)
    assert state.rollout.status is RolloutStatus.RUNNING and state.rollout.step_started_at == T0 + 100


def test_error_pauses(tmp_path):
    """A required check that cannot be measured (store unreadable) is an Error: the rollout pauses."""
    broken = unreachable_store(tmp_path)
    state = started(plan({"analysis": {"duration_s": 10}}, {"promote": {}}))
    state, events = machine.tick(state, Analyzer(broken), now=T0 + 11)
    assert state.rollout.status is RolloutStatus.PAUSED
    assert "analysis Error" in state.rollout.pause_reason and events[0].action == "rollout.pause"


def test_gate_needs_the_named_approver(store):
    p = plan({"gate": {"approver": "bob"}}, {"canary": 50}, {"promote": {}})
    state = started(p)
    assert state.rollout.status is RolloutStatus.AWAITING_APPROVAL
    with pytest.raises(RolloutError, match="bob"):
        machine.approve(state, actor="ann")
    with pytest.raises(RolloutError, match="approve"):
        machine.resume(state, actor="bob")
    state, events = machine.approve(state, actor="bob", now=T0 + 5)
    assert state.rollout.status is RolloutStatus.PROMOTED  # canary 50 then promote, both on entry
    assert state.rollout.approvals[0]["by"] == "bob"


def test_timed_pause_and_shadow_step(store):
    p = plan({"shadow": {"percent": 50, "duration_s": 30, "min_samples": 20}}, {"pause": {"duration_s": 10}},
             {"canary": 5})
    state = started(p)
    assert state.rollout.shadow_percent == 50 and state.rollout.canary_weight == 0
    add_traffic(store, "r", 1, 300, ts=T0 + 1)
    add_traffic(store, "r", 2, 150, ts=T0 + 1, shadow=True)
    state, _ = machine.tick(state, Analyzer(store), now=T0 + 31)
    assert state.rollout.step_index == 1 and state.rollout.shadow_percent == 0
    state, _ = machine.tick(state, Analyzer(store), now=T0 + 35)
    assert state.rollout.step_index == 1
    state, events = machine.tick(state, Analyzer(store), now=T0 + 42)
    # The plan has no promote step: finishing its last step promotes.
    assert state.rollout.status is RolloutStatus.PROMOTED and state.stable == 2


def test_operator_actions(store):
    p = plan({"canary": 10}, {"analysis": {"duration_s": 600}}, {"promote": {}})
    state = started(p)
    paused, _ = machine.pause(state, actor="ann", reason="lunch")
    assert paused.rollout.status is RolloutStatus.PAUSED and "lunch" in paused.rollout.pause_reason
    with pytest.raises(RolloutError):
        machine.pause(paused, actor="ann")
    promoted, _ = machine.promote(state, actor="ann")
    assert promoted.stable == 2 and promoted.rollout.status is RolloutStatus.PROMOTED
    aborted, events = machine.abort(state, actor="ann")
    assert aborted.rollout.status is RolloutStatus.ABORTED and aborted.stable == 1
    assert aborted.rollout.canary_weight == 0
    with pytest.raises(RolloutError, match="no rollout"):
        machine.rollback(aborted, actor="ann")
    with pytest.raises(RolloutError, match="already"):
        machine.start(state, candidate=3, plan_name="p", plan=p, actor="ann")


def test_state_survives_a_round_trip_through_the_store(store):
    """What a restart sees: the persisted JSON gives back the same state, mid-rollout."""
    p = plan({"canary": 10}, {"analysis": {"duration_s": 600}}, {"gate": {"approver": "bob"}}, {"promote": {}})
    state = started(p)
    assert store.put_route_state("r", state.to_json(), 0)
    revision, body = store.get_route_state("r")
    assert RouteState.from_json(body) == state
    assert not store.put_route_state("r", state.to_json(), 0)  # compare-and-set: a stale writer loses
    assert store.put_route_state("r", state.to_json(), revision)


def test_commands_write_audit_records(store):
    commands.reconcile(store, {"r": 1})
    state = commands.set_kill_switch(store, "r", "static", actor="ann", message="Back soon.", reason="incident")
    assert state.kill_switch.mode == "static"
    audit = store.list_audit()
    assert audit[-1].action == "flag.kill_switch" and audit[-1].actor == "ann"
    assert "incident" in audit[-1].details["reason"]
    with pytest.raises(RolloutError, match="message"):
        commands.set_kill_switch(store, "r", "static", actor="ann")
    commands.set_kill_switch(store, "r", "off", actor="ann")
    assert commands.state_of(store, "r").kill_switch is None


def test_reconcile_follows_an_edited_config(store):
    commands.reconcile(store, {"r": 1})
    commands.reconcile(store, {"r": 1})
    assert [a.action for a in store.list_audit()] == []
    commands.reconcile(store, {"r": 3})
    state = commands.state_of(store, "r")
    assert (state.stable, state.last_good, state.declared) == (3, 1, 3)
    assert store.list_audit()[-1].action == "route.stable_from_config"
