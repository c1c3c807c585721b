"""Incidents through the real CLI on a real store: opening by hand, acknowledging against the response
target, resolving, the timeline (audit log and traces) and the postmortem draft."""

from __future__ import annotations

import json
import re
import time

import pytest

from lockgate.config.plans import RolloutPlan
from lockgate.control import commands
from lockgate.incidents import lifecycle
from lockgate.rollout import machine
from lockgate.store import SqlStore
from tests.harness import run_cli, store_at
from tests.rollout_helpers import add_traffic


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def store_of(data_dir) -> SqlStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    store = store_at(data_dir / "lockgate.sqlite3")
    store.migrate()
    return store


def test_open_ack_resolve_by_hand(data_dir):
    bad = run_cli("incident", "open", "--title", "French answers", "--severity", "extreme", data_dir=data_dir,
                  check=False)
    assert bad.returncode == 2 and "'critical', 'high', 'medium', 'low'" in bad.stderr
    out = run_cli("incident", "open", "--title", "Answers in French", "--severity", "high", "--route", "echo",
                  "--as", "ann", data_dir=data_dir).stdout
    assert out.startswith("opened INC-1 (high): Answers in French; acknowledge by ")
    listed = run_cli("incident", "list", data_dir=data_dir).stdout.splitlines()
    assert listed[1].split()[:4] == ["INC-1", "high", "open", "echo"] and "ann" in listed[1]
    acked = run_cli("incident", "ack", "1", "--as", "bob", data_dir=data_dir).stdout
    assert "INC-1 open: acknowledged after" in acked and "(target 60 min: met)" in acked
    again = run_cli("incident", "ack", "INC-1", "--as", "carol", data_dir=data_dir, check=False)
    assert again.returncode == 1 and "INC-1 was acknowledged by bob already" in again.stderr
    run_cli("incident", "resolve", "inc-1", "--as", "bob", "--note", "prompt fixed", data_dir=data_dir)
    twice = run_cli("incident", "resolve", "1", data_dir=data_dir, check=False)
    assert twice.returncode == 1 and "INC-1 was resolved by bob already" in twice.stderr
    missing = run_cli("incident", "show", "99", data_dir=data_dir, check=False)
    assert missing.returncode == 2 and "no incident INC-99; see `lockgate incident list`" in missing.stderr
    nonsense = run_cli("incident", "show", "the-bad-one", data_dir=data_dir, check=False)
    assert nonsense.returncode == 2 and "'the-bad-one' is not an incident id" in nonsense.stderr
    shown = run_cli("incident", "show", "1", data_dir=data_dir).stdout
    assert "INC-1 [high] RESOLVED: Answers in French" in shown
    lines = [line for line in shown.splitlines() if "incident." in line]
    assert [line.split()[2] for line in lines] == ["incident.open", "incident.ack", "incident.resolve"]
    assert "INC-1 resolved by bob: prompt fixed" in lines[2]
    records = [(r.actor, r.action, r.target) for r in store_of(data_dir).list_audit()]
    assert records == [("ann", "incident.open", "INC-1"), ("bob", "incident.ack", "INC-1"),
                       ("bob", "incident.resolve", "INC-1")]


def test_response_targets_by_severity(data_dir):
    store = store_of(data_dir)
    incident = lifecycle.open_incident(store, title="slow", severity="critical", opened_by="ann")
    assert incident.response_due_at - incident.opened_at == pytest.approx(15 * 60, abs=1)
    assert lifecycle.response_status(incident, incident.opened_at + 60).startswith("not acknowledged; due within 14")
    assert lifecycle.response_status(incident, incident.opened_at + 20 * 60).startswith("OVERDUE")
    low = lifecycle.open_incident(store, title="typo", severity="low", opened_by="ann")
    assert low.response_due_at - low.opened_at == pytest.approx(24 * 3600, abs=1)
    overdue = run_cli("incident", "list", data_dir=data_dir).stdout
    assert "OVERDUE" not in overdue  # both are within their targets


def test_timeline_and_postmortem_from_the_audit_log_and_the_traces(data_dir, tmp_path):
    store = store_of(data_dir)
    commands.reconcile(store, {"echo": 1, "other": 1})
    plan = RolloutPlan.model_validate({"steps": [{"canary": {"weight": 50}}, {"pause": {}}, {"promote": {}}]})
    commands.update_state(store, "echo", lambda s: machine.start(s, candidate=2, plan_name="p", plan=plan,
                                                                 actor="ann"), actor="ann")
    commands.set_kill_switch(store, "other", "last_good", actor="zed", reason="unrelated")
    now = time.time()
    add_traffic(store, "echo", 1, 40, ts=now - 30)
    add_traffic(store, "echo", 2, 30, ts=now - 30, failed=30)
    commands.apply(store, "echo", "rollback", actor="bob", reason="canary failing")
    out = run_cli("incident", "open", "--title", "Canary failing", "--severity", "critical", "--route", "echo",
                  "--as", "bob", "--summary", "echo@2 answers 502", data_dir=data_dir).stdout
    assert "INC-1" in out
    shown = json.loads(run_cli("incident", "show", "1", "--json", data_dir=data_dir).stdout)
    actions = [e["action"] for e in shown["entries"]]
    assert "flag.kill_switch" not in actions  # another route's change is not this incident's
    audit_actions = [a for a in actions if not a.startswith("traces.")]
    assert audit_actions == ["rollout.start", "rollout.step", "rollout.step_completed", "rollout.step",
                             "rollout.pause", "rollout.rollback", "incident.open"]
    assert "traces.errors_began" in actions
    began = next(e for e in shown["entries"] if e["action"] == "traces.errors_began")
    # The failures are a second of traffic: in one minute, or in two when they straddle a minute's edge.
    assert re.fullmatch(r"first minute with failed requests on echo@2: (\d+) of \1", began["text"])
    assert began["ts"] % 60 == 0 and now - 90 < began["ts"] <= now - 29
    assert shown["totals"] == {"echo@1": {"requests": 40, "failed": 0}, "echo@2": {"requests": 30, "failed": 30}}
    text = run_cli("incident", "show", "1", data_dir=data_dir).stdout
    assert "rolled back by bob: canary failing" in text and "echo@2" in text and "30 failed (100.0%)" in text
    path = tmp_path / "INC-1.md"
    run_cli("incident", "postmortem", "1", "--out", str(path), data_dir=data_dir)
    markdown = path.read_text()
    assert markdown.startswith("# Postmortem: INC-1 — Canary failing")
    assert "| Severity | critical (acknowledge within 15 min) |" in markdown
    assert "| echo@2 | 30 | 30 | 100.0% |" in markdown and "| echo@1 | 40 | 0 | 0.0% |" in markdown
    timeline = markdown.split("## Timeline")[1].split("## Root cause")[0]
    assert timeline.index("rollout.start on echo") < timeline.index("rolled back by bob") \
        < timeline.index("INC-1 opened (critical) by bob")
    for heading in ("## Root cause", "## Contributing factors", "## Action items", "## Lessons learned"):
        assert heading in markdown
