"""Alerts and incidents end to end, through real `lockgate serve` processes, the real CLI and a real
webhook receiver: a canary whose upstream fails breaks the route's SLO; the burn-rate alert fires
once, rolls the canary back, opens an incident, and sends its resolve notice when the errors stop."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread, run_in_thread
from tests.harness import create_key, run_cli
from tests.test_rollouts_http import Traffic, chat, wait_for  # the rollout tests' live traffic
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def candidate_upstream() -> Iterator[FakeUpstreamThread]:
    server = run_in_thread()
    yield server
    server.stop()


def write_config(path: Path, stable_url: str, candidate_url: str, hook_url: str) -> Path:
    # The plan holds the canary at 50% (a pause step) and has no automatic rollback of its own: here
    # it is the alert that must act. Windows are seconds long so the test runs in seconds.
    path.write_text(f"""
version: 1
backends:
  stable_up: {{kind: openai, base_url: "{stable_url}"}}
  cand_up: {{kind: openai, base_url: "{candidate_url}", circuit: {{failure_threshold: 1000}}}}
routes:
  echo:
    serve: v1
    releases:
      v1: {{backend: stable_up, model: ok, retry: {{max_attempts: 1}}}}
      v2: {{backend: cand_up, model: ok, retry: {{max_attempts: 1}}}}
    plans:
      default:
        steps: [{{canary: {{weight: 50}}}}, {{pause: {{}}}}, {{promote: {{}}}}]
        rollback_when: []
alerts:
  - name: echo-availability
    route: echo
    kind: burn_rate
    slo: {{objective: 0.9, metric: error_rate}}
    windows: [{{long_s: 6, short_s: 2, factor: 2, severity: critical}}]
    min_samples: 5
    evaluate_every_s: 0.25
    runbook: https://runbooks.example.com/echo
    actions:
      - webhook: {{url: "{hook_url}", retries: 3, backoff_s: 0.2}}
      - rollback: {{}}
      - incident: {{}}
""")
    return path


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "supervisor"])
def test_slo_breach_fires_once_rolls_back_opens_an_incident_and_resolves(
        workers, tmp_path, upstream, candidate_upstream, start_gateway):
    with WebhookReceiver() as receiver:
        config = write_config(tmp_path / "lockgate.yaml", upstream.base_url, candidate_upstream.base_url,
                              receiver.url)
        data_dir = tmp_path / "data"
        key = create_key(data_dir)
        gw = start_gateway(config, data_dir=data_dir, workers=workers)
        candidate_upstream.set_mode("fault-500")  # the candidate is broken from its first request
        with Traffic(gw, key, threads=3) as traffic:
            wait_for(lambda: sum(traffic.statuses.values()) >= 30)  # healthy traffic first: nothing fires
            run_cli("rollout", "start", "echo", "--candidate", "v2", "--as", "ann", data_dir=data_dir, config=config)
            firing = receiver.wait_for(lambda got: any(n["state"] == "firing" for n in got), 60)[0]
            rollout = wait_for(lambda: (r := rollout_of(data_dir, config))["status"] != "paused" and r, 30)
            resolved = receiver.wait_for(lambda got: any(n["state"] == "resolved" for n in got), 60)[-1]
            served_after = Counter(chat(gw, key, user=f"late-{i}").headers["x-lockgate-release"] for i in range(20))
        assert traffic.statuses[502] >= 5  # the canary did fail users before the alert acted

    # Fired exactly once, and resolved once, with the same fingerprint.
    assert [n["state"] for n in receiver.received] == ["firing", "resolved"]
    assert firing["alert"] == "echo-availability" and firing["severity"] == "critical"
    assert firing["value"] > 2 and firing["threshold"] == 2 and firing["windows"][0]["short_s"] == 2
    assert firing["runbook"] == "https://runbooks.example.com/echo" and firing["incident"] == "INC-1"
    assert resolved["fingerprint"] == firing["fingerprint"] and resolved["started_at"] == firing["started_at"]
    assert resolved["incident"] == "INC-1" and resolved["resolved_at"] > firing["started_at"]
    # The short window cleared (that resolved it) while the long one still held the canary's errors.
    assert resolved["windows"][0]["short_burn"] <= 2

    # The rollback: by the alert, and the candidate serves nobody any more.
    assert rollout["status"] == "rolled_back"
    assert rollout["end_reason"].startswith("rolled back by alert:echo-availability: alert echo-availability")
    assert served_after == {"echo@1": 20}
    fired_actions = {a["kind"]: a for a in firing["actions"]}
    assert fired_actions["rollback"]["outcome"] == "done" and fired_actions["incident"]["incident"] == "INC-1"

    # The incident: opened by the alert, mitigated when it resolved, with the story in order.
    (incident,) = [json.loads(line) for line in run_cli("incident", "list", "--json", data_dir=data_dir).stdout
                   .splitlines()]
    assert incident["opened_by"] == "alert:echo-availability" and incident["severity"] == "critical"
    assert incident["status"] == "mitigated" and incident["route"] == "echo"
    shown = json.loads(run_cli("incident", "show", "1", "--json", data_dir=data_dir).stdout)
    story = [(e["action"], e["actor"]) for e in shown["entries"] if e["source"] == "audit"]
    order = [story.index(("rollout.start", "ann")), story.index(("alert.fire", "alert:echo-availability")),
             story.index(("rollout.rollback", "alert:echo-availability")),
             story.index(("incident.open", "alert:echo-availability")),
             story.index(("alert.resolve", "alert:echo-availability")),
             story.index(("incident.mitigate", "alert:echo-availability"))]
    assert order == sorted(order)
    assert [a for a, _ in story].count("alert.fire") == 1 and [a for a, _ in story].count("alert.resolve") == 1
    assert shown["totals"]["echo@2"]["failed"] == shown["totals"]["echo@2"]["requests"] > 0
    postmortem = run_cli("incident", "postmortem", "1", data_dir=data_dir).stdout
    assert "alert echo-availability fired (critical): error budget burning" in postmortem
    assert "rolled back by alert:echo-availability" in postmortem

    # The shared state, as the on-call reads it: resolved (no data once the traffic stopped), and what the
    # firing did.
    (rule,) = [json.loads(line) for line in run_cli("alerts", "status", "--json", data_dir=data_dir,
                                                     config=config).stdout.splitlines()]
    assert rule["alert"] == "echo-availability" and rule["state"] in ("ok", "no_data")
    assert rule["firing_since"] is None and rule["now"]["status"] != "firing"
    assert rule["details"]["fired_at"] == firing["started_at"] and rule["details"]["incident"] == "INC-1"

    # Counted in Prometheus too (summed over workers where there are several).
    body = httpx.get(gw.base_url + "/metrics", timeout=10).text
    assert 'lockgate_alert_notices_total{alert="echo-availability",notice="firing"} 1.0' in body
    assert 'lockgate_alert_webhook_deliveries_total{alert="echo-availability",outcome="delivered"} 2.0' in body


def rollout_of(data_dir: Path, config: Path) -> dict:
    out = run_cli("rollout", "status", "echo", "--json", data_dir=data_dir, config=config).stdout
    return json.loads(out)["rollout"]
