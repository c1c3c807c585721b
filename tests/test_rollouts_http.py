"""Rollouts, flags and experiments through real `lockgate serve` processes and the real CLI.

Stable and candidate run on two fake upstreams, so the candidate's upstream can be made to fail
while stable's keeps answering.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread, run_in_thread
from tests.harness import create_key, run_cli, store_at
from tests.http_traffic import Traffic, chat, wait_for


@pytest.fixture
def candidate_upstream() -> Iterator[FakeUpstreamThread]:
    server = run_in_thread()
    yield server
    server.stop()


def write_rollout_config(path: Path, stable_url: str, candidate_url: str, plans: str, extra_route: str = "") -> Path:
    path.write_text(f"""
version: 1
backends:
  stable_up: {{kind: openai, base_url: {stable_url}}}
  cand_up: {{kind: openai, base_url: {candidate_url}, circuit: {{failure_threshold: 1000}}}}
routes:
  echo:
    serve: v1
    releases:
      v1: {{backend: stable_up, model: ok, retry: {{max_attempts: 1}}}}
      v2: {{backend: cand_up, model: ok, retry: {{max_attempts: 1}}}}
      v3: {{backend: cand_up, model: ok, system_prompt: "third"}}
    plans:
{plans}
{extra_route}
""")
    return path


def status(data_dir: Path, config: Path) -> dict:
    return json.loads(run_cli("rollout", "status", "echo", "--json", data_dir=data_dir, config=config).stdout)


@pytest.fixture
def setup(tmp_path, upstream, candidate_upstream, start_gateway):
    def make(plans: str, extra_route: str = "", workers: int = 1):
        config = write_rollout_config(tmp_path / "lockgate.yaml", upstream.base_url, candidate_upstream.base_url,
                                      plans, extra_route)
        data_dir = tmp_path / "data"
        key = create_key(data_dir)
        gw = start_gateway(config, data_dir=data_dir, workers=workers)
        return gw, key, config, data_dir
    return make


def test_canary_is_sticky_by_user_then_analysis_promotes(setup):
    gw, key, config, data_dir = setup("""      default:
        steps:
          - canary: {weight: 50}
          - pause: {}
          - analysis: {duration_s: 10, min_samples: 20}
          - promote: {}
        checks:   # a few dozen requests per side: tolerate 10 points, or nothing is ever certain
          - {metric: error_rate, max_increase: 0.1}
          - {metric: guard_violation_rate, max_increase: 0.1}
          - {metric: p95_latency_ms, max_ratio: 3, slack_ms: 500}""")
    out = run_cli("rollout", "start", "echo", "--candidate", "v2", "--as", "ann", data_dir=data_dir, config=config)
    assert "echo@2 over echo@1" in out.stdout and "candidate serves 50% of users" in out.stdout
    time.sleep(0.6)  # workers refresh their copy of the route state a few times a second
    served: dict[str, set[str]] = {}
    for _ in range(3):
        for u in range(30):
            r = chat(gw, key, user=f"user-{u}")
            assert r.status_code == 200
            served.setdefault(f"user-{u}", set()).add(r.headers["x-lockgate-release"])
    assert all(len(releases) == 1 for releases in served.values()), "a user moved between releases"
    counts = Counter(next(iter(s)) for s in served.values())
    assert counts["echo@1"] > 0 and counts["echo@2"] > 0
    # Traffic flows while the analysis step measures; it promotes once both sides have enough.
    with Traffic(gw, key):
        run_cli("rollout", "resume", "echo", data_dir=data_dir, config=config)
        final = wait_for(lambda: (s := status(data_dir, config))["rollout"]["status"] != "running" and s, 60)
    assert final["rollout"]["status"] == "promoted", final["rollout"]
    assert final["stable"] == 2 and final["last_good"] == 1
    time.sleep(0.6)
    assert {chat(gw, key, user=f"user-{u}").headers["x-lockgate-release"] for u in range(10)} == {"echo@2"}

    actions = [a.action for a in store_at(data_dir / "lockgate.sqlite3").list_audit()]
    rollout_actions = [a for a in actions if a.startswith("rollout.")]
    assert rollout_actions[0] == "rollout.start" and rollout_actions[-1] == "rollout.promote"


def test_failing_candidate_is_rolled_back_automatically(setup, candidate_upstream):
    gw, key, config, data_dir = setup("""      default:
        steps:
          - canary: {weight: 50}
          - analysis: {duration_s: 600, min_samples: 1000}
          - promote: {}
        rollback_when:
          - {metric: error_rate, above: 0.2, window_s: 30, min_samples: 5}""")
    run_cli("rollout", "start", "echo", "--candidate", "v2", data_dir=data_dir, config=config)
    time.sleep(0.6)
    candidate_upstream.set_mode("fault-500")
    with Traffic(gw, key) as traffic:
        s = wait_for(lambda: (s := status(data_dir, config))["rollout"]["status"] != "running" and s, 60)
    assert s["rollout"]["status"] == "rolled_back" and traffic.statuses[502] >= 5
    assert "error_rate" in s["rollout"]["end_reason"] and s["stable"] == 1
    time.sleep(0.6)
    assert {chat(gw, key).headers["x-lockgate-release"] for _ in range(20)} == {"echo@1"}
    human = run_cli("rollout", "status", "echo", data_dir=data_dir, config=config).stdout
    assert "ROLLED_BACK" in human and "absolute limit crossed" in human


def test_rollout_survives_a_killed_gateway(setup, start_gateway):
    gw, key, config, data_dir = setup("""      default:
        steps:
          - canary: {weight: 30}
          - pause: {}
          - promote: {}""")
    run_cli("rollout", "start", "echo", "--candidate", "v2", data_dir=data_dir, config=config)
    gw.kill()
    gw2 = start_gateway(config, data_dir=data_dir)
    s = status(data_dir, config)
    assert s["rollout"]["status"] == "paused" and s["rollout"]["step_index"] == 1
    assert s["rollout"]["canary_weight"] == 30
    seen = Counter(chat(gw2, key).headers["x-lockgate-release"] for _ in range(60))
    assert seen["echo@2"] > 0 and seen["echo@1"] > seen["echo@2"]  # 30% without user ids: per request
    out = run_cli("rollout", "resume", "echo", "--as", "bob", data_dir=data_dir, config=config).stdout
    assert "PROMOTED" in out


def test_gate_and_operator_errors(setup):
    _, _, config, data_dir = setup("""      default:
        steps:
          - gate: {approver: carol}
          - canary: {weight: 10}
          - promote: {}""")
    run_cli("rollout", "start", "echo", "--candidate", "echo@2", data_dir=data_dir, config=config)
    bad = run_cli("rollout", "approve", "echo", "--as", "mallory", data_dir=data_dir, config=config, check=False)
    assert bad.returncode == 1 and "needs approval by carol" in bad.stderr
    again = run_cli("rollout", "start", "echo", "--candidate", "v3", data_dir=data_dir, config=config, check=False)
    assert again.returncode == 1 and "already has a rollout" in again.stderr
    assert "waits for `lockgate rollout approve echo --as carol`" in run_cli(
        "rollout", "status", "echo", data_dir=data_dir, config=config).stdout
    out = run_cli("rollout", "approve", "echo", "--as", "carol", data_dir=data_dir, config=config).stdout
    assert "PROMOTED" in out
    unknown = run_cli("rollout", "start", "echo", "--candidate", "v9", data_dir=data_dir, config=config, check=False)
    assert unknown.returncode == 1 and "not a release of echo" in unknown.stderr


def test_shadow_answers_are_traced_never_returned(setup, candidate_upstream):
    gw, key, config, data_dir = setup("""      default:
        steps:
          - shadow: {percent: 100, duration_s: 600, min_samples: 5}
          - pause: {}
        checks:
          - {metric: error_rate, max_increase: 0.1}
          - {metric: p95_latency_ms, max_ratio: 3, slack_ms: 500}""")
    run_cli("rollout", "start", "echo", "--candidate", "v2", data_dir=data_dir, config=config)
    time.sleep(0.6)
    ids = []
    for i in range(30):
        r = chat(gw, key, text=f"question {i}")
        assert r.headers["x-lockgate-release"] == "echo@1"
        ids.append(r.headers["x-request-id"])
    shadow = wait_for(lambda: gw.trace(ids[-1] + "-shadow", wait_s=0.5) if _has(gw, ids[-1] + "-shadow") else None)
    assert shadow["shadow_of"] == ids[-1] and shadow["release"] == "echo@2"
    assert sum(candidate_upstream.counts.values()) >= 30
    # The shadow step's analysis reads the candidate's shadow answers (the step's verdict at its end is
    # covered in test_rollout_machine).
    def analysed():
        s = status(data_dir, config)["rollout"]["last_analysis"]
        return s and s["measurements"][0]["candidate_n"] >= 30 and s
    analysis = wait_for(analysed)
    assert analysis["measurements"][0]["metric"] == "error_rate"


def _has(gw, trace_id: str) -> bool:
    try:
        gw.trace(trace_id, wait_s=0.3)
        return True
    except Exception:  # noqa: BLE001 - not there yet
        return False


def test_kill_switch_and_pins(setup):
    gw, key, config, data_dir = setup("""      default:
        steps: [{canary: {weight: 100}}, {promote: {}}]""")
    # A tester pins a release with a header; a bad pin is a clear 400.
    assert chat(gw, key, headers={"x-lockgate-release": "v3"}).headers["x-lockgate-release"] == "echo@3"
    bad = chat(gw, key, headers={"x-lockgate-release": "echo@99"})
    assert bad.status_code == 400 and "names no release" in bad.json()["error"]["message"]
    # Blue-green: one full switch, then the instant way back is the kill switch to the last good release.
    run_cli("rollout", "start", "echo", "--candidate", "v2", data_dir=data_dir, config=config)
    time.sleep(0.6)
    assert chat(gw, key).headers["x-lockgate-release"] == "echo@2"
    run_cli("flag", "set", "echo", "kill_switch", "last_good", "--reason", "bad answers", data_dir=data_dir)
    time.sleep(0.6)
    r = chat(gw, key)
    assert r.headers["x-lockgate-release"] == "echo@1" and r.headers["x-lockgate-assignment"] == "kill_switch"
    run_cli("flag", "set", "echo", "kill_switch", "static", "--message", "We are back soon.", data_dir=data_dir)
    time.sleep(0.6)
    r = chat(gw, key)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "We are back soon."
    assert r.headers["x-lockgate-release"] == "none"
    flags = json.loads(run_cli("flag", "get", "echo", data_dir=data_dir).stdout)
    assert flags["kill_switch"]["mode"] == "static"
    run_cli("flag", "set", "echo", "kill_switch", "off", data_dir=data_dir)
    time.sleep(0.6)
    assert chat(gw, key).headers["x-lockgate-release"] == "echo@2"


def test_experiment_weights_and_sample_ratio(setup):
    gw, key, config, data_dir = setup("""      default:
        steps: [{promote: {}}]""", extra_route="""    experiments:
      abc:
        arms: {v1: 50, v2: 25, v3: 25}""")
    run_cli("experiment", "start", "echo", "abc", data_dir=data_dir, config=config)
    time.sleep(0.6)
    seen = Counter(chat(gw, key, user=f"u{i}").headers["x-lockgate-release"] for i in range(200))
    assert set(seen) == {"echo@1", "echo@2", "echo@3"}
    assert 70 <= seen["echo@1"] <= 130
    time.sleep(1.0)
    report = run_cli("experiment", "report", "echo", data_dir=data_dir, config=config).stdout
    assert "sample ratio: ok" in report and "error_rate" in report


def test_the_admin_api_drives_rollouts_and_flags(setup):
    gw, _, config, data_dir = setup("""      default:
        steps: [{canary: {weight: 20}}, {pause: {}}, {promote: {}}]""")
    deployer = create_key(data_dir, "dee", "--role", "deployer")
    viewer = create_key(data_dir, "vic", "--role", "viewer")
    time.sleep(2.5)  # the key ring refreshes every 2 s

    def call(method: str, path: str, key: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(method, gw.base_url + "/admin/v1" + path, json=body, timeout=30,
                             headers={"authorization": f"Bearer {key}"})

    r = call("post", "/rollouts/echo/start", viewer, {"candidate": "v2"})
    assert r.status_code == 403 and "deployer" in r.json()["error"]["message"]
    r = call("post", "/rollouts/echo/start", deployer, {"candidate": "v2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rollout"]["status"] == "paused" and body["rollout"]["canary_weight"] == 20
    assert "pause until resumed" in body["status_text"]
    r = call("post", "/rollouts/echo/pause", deployer, {"reason": "again"})
    assert r.status_code == 409 and "not running" in r.json()["error"]["message"]
    r = call("put", "/flags/echo/kill_switch", deployer, {"mode": "static"})
    assert r.status_code == 409 and "--message" in r.json()["error"]["message"]
    r = call("put", "/flags/echo/kill_switch", deployer, {"mode": "last_good", "reason": "drill"})
    assert r.status_code == 200 and r.json()["kill_switch"]["mode"] == "last_good"
    assert r.json()["rollout"]["status"] == "rolled_back"  # the kill switch ends the rollout
    assert call("get", "/flags/echo", viewer).json()["kill_switch"]["set_by"] == "dee"
    assert call("get", "/rollouts/nope", viewer).status_code == 404
