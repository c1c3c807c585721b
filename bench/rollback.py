"""How fast a bad canary is rolled back, and how much traffic it served meanwhile.

One `lockgate serve` (2 workers) in front of two fake upstreams, one for the stable release and one
for the candidate. Per scenario: start a canary rollout, send a steady stream of requests (each with
its own user id, so sticky assignment spreads them like distinct users), then make the candidate's
upstream go bad and watch:

  errors     the candidate's upstream answers 500
  slow       the candidate's upstream answers after 1.5 s (plan limit: p95 above 1 s)
  guard      the candidate's upstream leaks personal data (the PII output guard redacts: a violation)

Reported per scenario:
  rollback_s      fault start -> the candidate's share of traffic at 0%: the later of the rollback
                  written to the route's state and the last request the candidate was given
  decision_s      fault start -> the rollback written to the route's state
  bad_share_pct   of the requests sent from the fault's start until the candidate's traffic reached
                  0%, the share the bad release served

Run: .venv/bin/python bench/rollback.py   (about 40 s; writes bench/results/rollback.md)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import Processes, free_port, machine, wait_http, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = REPO / "bench" / "results" / "rollback.md"

SCENARIOS = {
    "errors": {"mode": "fault-500"},
    "slow": {"mode": "fault-slow", "delay_s": 1.5},
    "guard": {"mode": "fault-leak"},
}

CONFIG = """
version: 1
server:
  default_key_rate_limit: {{requests_per_minute: 1000000, tokens_per_minute: 100000000}}
backends:
  stable_up: {{kind: openai, base_url: {stable}}}
  cand_up: {{kind: openai, base_url: {candidate}, circuit: {{failure_threshold: 1000}}}}
routes:
  bench:
    serve: v1
    rate_limit: {{requests_per_minute: 1000000}}
    releases:
      v1: {{backend: stable_up, model: ok, retry: {{max_attempts: 1}}}}
      v2: {{backend: cand_up, model: ok, retry: {{max_attempts: 1}}, timeouts: {{total_s: 10, first_token_s: 10}}}}
    plans:
      canary:
        steps:
          - canary: {{weight: {weight}}}
          - analysis: {{duration_s: 3600, min_samples: 1000}}
          - promote: {{}}
        rollback_when:
          - {{metric: error_rate, above: 0.05, window_s: 10, min_samples: {min_samples}}}
          - {{metric: p95_latency_ms, above: 1000, window_s: 10, min_samples: {min_samples}}}
          - {{metric: guard_violation_rate, above: 0.05, window_s: 10, min_samples: {min_samples}}}
"""


@dataclass
class Sent:
    t: float  # wall clock at send
    release: str
    status: int


@dataclass
class Scenario:
    name: str
    fault_at: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def candidate_after_fault(self) -> list[Sent]:
        return [s for s in self.sent if s.t >= self.fault_at and s.release == "bench@2"]

    def zero_at(self) -> float:
        """When the candidate's share reached 0%: the later of the rollback being written and the last
        request the candidate was given (workers pick the new state up within a fraction of a second;
        with sparse candidate traffic the last request can come well before the decision)."""
        bad = self.candidate_after_fault()
        ended = (self.state.get("rollout") or {}).get("ended_at") or self.fault_at
        return max([ended, *(s.t for s in bad)])

    def rollback_s(self) -> float:
        return self.zero_at() - self.fault_at

    def decision_s(self) -> float | None:
        ended = (self.state.get("rollout") or {}).get("ended_at")
        return None if ended is None else ended - self.fault_at

    def achieved_rate(self) -> float:
        answered = [s.t for s in self.sent if s.status]
        return len(answered) / max(1e-9, max(answered) - min(answered)) if len(answered) > 1 else 0.0

    def bad_share_pct(self) -> float:
        window = [s for s in self.sent if self.fault_at <= s.t <= self.zero_at()]
        return 100.0 * len(self.candidate_after_fault()) / max(1, len(window))


async def drive(base_url: str, key: str, rate: float, until: Any, scenario: Scenario) -> None:
    """Open loop: request i leaves at t0 + i/rate, whatever earlier ones are doing."""
    connector = aiohttp.TCPConnector(limit=256)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks: set[asyncio.Task[None]] = set()
        t0, i = time.perf_counter(), 0

        async def one(n: int) -> None:
            sent_at = time.time()
            body = json.dumps({"model": "bench", "user": f"user-{scenario.name}-{n}",
                               "messages": [{"role": "user", "content": f"question {n}"}]})
            try:
                async with session.post(base_url + "/v1/chat/completions", data=body, headers=headers) as r:
                    await r.read()
                    scenario.sent.append(Sent(sent_at, r.headers.get("x-lockgate-release", "none"), r.status))
            except (TimeoutError, aiohttp.ClientError):
                scenario.sent.append(Sent(sent_at, "none", 0))

        while not until():
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)


def cli(data_dir: Path, config: Path, *args: str) -> str:
    import subprocess

    out = subprocess.run([PY, "-m", "lockgate.cli.main", "--data-dir", str(data_dir), "--config", str(config), *args],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"lockgate {' '.join(args)}: {out.stderr}")
    return out.stdout


def control(port: int, payload: dict[str, Any]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_control", data=json.dumps(payload).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def run(args: argparse.Namespace) -> list[Scenario]:
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="lockgate-rollback-"))
    try:
        ports = {"stable": free_port(), "candidate": free_port(), "gateway": free_port()}
        for name in ("stable", "candidate"):
            log = work / f"{name}.log"
            proc = procs.spawn([PY, "-m", "lockgate.devtools.fake_upstream", "--port", str(ports[name])], log)
            wait_port(ports[name], proc, log)
        config = work / "lockgate.yaml"
        config.write_text(CONFIG.format(stable=f"http://127.0.0.1:{ports['stable']}/v1",
                                        candidate=f"http://127.0.0.1:{ports['candidate']}/v1",
                                        weight=args.weight, min_samples=args.min_samples))
        data_dir = work / "data"
        key = cli(data_dir, config, "keys", "create", "--name", "bench").strip().splitlines()[-1]
        log = work / "gateway.log"
        gw = procs.spawn([PY, "-m", "lockgate.cli.main", "serve", "--data-dir", str(data_dir), "--config", str(config),
                          "--port", str(ports["gateway"]), "--workers", str(args.workers)], log)
        base = f"http://127.0.0.1:{ports['gateway']}"
        wait_http(base + "/readyz", gw, log)
        results = []
        for name, fault in SCENARIOS.items():
            scenario = run_scenario(name, fault, ports["candidate"], base, key, data_dir, config, args)
            results.append(scenario)
            print(f"{name}: rollback_s={scenario.rollback_s():.2f} decision_s={scenario.decision_s()} "
                  f"bad_share_pct={scenario.bad_share_pct():.2f} status={scenario.state['rollout']['status']}",
                  flush=True)
        return results
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run_scenario(name: str, fault: dict[str, Any], candidate_port: int, base: str, key: str, data_dir: Path,
                 config: Path, args: argparse.Namespace) -> Scenario:
    control(candidate_port, {"mode": "ok"})
    cli(data_dir, config, "rollout", "start", "bench", "--candidate", "v2", "--plan", "canary")
    time.sleep(1.0)  # every worker has the new state
    scenario = Scenario(name)
    finished: list[float] = []
    loop_start = time.monotonic()

    def until() -> bool:
        now = time.monotonic()
        if not scenario.fault_at and now - loop_start >= args.warmup_s:
            control(candidate_port, {"mode": fault["mode"], **({"delay_s": fault["delay_s"]} if "delay_s" in fault
                                                                else {})})
            scenario.fault_at = time.time()
        if scenario.fault_at and not finished and _state(data_dir).get("rollout", {}).get("status") != "running":
            finished.append(now)
        return bool(finished and now - finished[0] >= args.tail_s) or now - loop_start > args.timeout_s

    asyncio.run(drive(base, key, args.rate, until, scenario))
    scenario.state = _state(data_dir)
    return scenario


def _state(data_dir: Path) -> dict[str, Any]:
    from lockgate.store import SqliteStore

    stored = SqliteStore(data_dir / "lockgate.sqlite3").get_route_state("bench")
    return stored[1] if stored else {}


def write_report(results: list[Scenario], args: argparse.Namespace, command: str, started: dt.datetime,
                 runtime_s: float) -> None:
    m = machine()
    lines = [
        "# Rollback benchmark", "",
        f"Command: `{command}`  ", f"Run: {started:%Y-%m-%d %H:%M} UTC, {runtime_s:.0f} s; machine: {m}", "",
        "## Method", "",
        f"`lockgate serve` with {args.workers} workers in front of two fake upstreams (stable, candidate), "
        f"{args.rate:g} requests/s open loop, each request with its own user id. A canary rollout gives the "
        f"candidate {args.weight:g}% of users; after {args.warmup_s:g} s the candidate's upstream goes bad. "
        "The plan's absolute limits (`rollback_when`, trailing 10 s window, at least "
        f"{args.min_samples} candidate requests): error rate above 5%, p95 latency above 1 s, output-guard "
        "violations above 5%.", "",
        "- **rollback_s**: fault start → the candidate's traffic at 0%: the later of the rollback being written "
        "and the send time of the last request the candidate served.",
        "- **decision_s**: fault start → the rollback written to the route's state by the controller.",
        "- **bad_share_pct**: of all requests sent from the fault's start until the candidate's traffic reached "
        "0%, the share the bad release served.", "",
        "The path a rollback takes: a failing answer is journaled by the worker (flushed every 0.2 s), loaded "
        "into the store by the supervisor, judged by the controller (every 0.25 s), and the new route state is "
        "picked up by every worker (every 0.25 s).", "",
        "## Results", "",
        "| scenario | rollback_s | decision_s | bad share % | candidate answers after fault | requests in window | "
        "achieved req/s | end reason |", "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in results:
        window = [x for x in s.sent if s.fault_at <= x.t <= s.zero_at()]
        decision = s.decision_s()
        lines.append(f"| {s.name} | {s.rollback_s():.2f} | {'-' if decision is None else f'{decision:.2f}'} | "
                     f"{s.bad_share_pct():.2f} | {len(s.candidate_after_fault())} | {len(window)} | "
                     f"{s.achieved_rate():.0f} | "
                     f"{(s.state.get('rollout') or {}).get('end_reason', '-')} |")
    worst_s = max(s.rollback_s() for s in results)
    worst_share = max(s.bad_share_pct() for s in results)
    verdict_s = "met" if worst_s <= 5 else "missed"
    verdict_share = "met" if worst_share < 1 else "missed"
    lines += ["", f"Target: at most 5 s and under 1%. Worst: {worst_s:.2f} s ({verdict_s}), "
              f"{worst_share:.2f}% ({verdict_share}).",
              "", f"`worst_rollback_s={worst_s:.2f} worst_bad_share_pct={worst_share:.2f}`", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=400, help="requests per second")
    parser.add_argument("--weight", type=float, default=0.5, help="candidate canary weight, percent of users")
    parser.add_argument("--min-samples", type=int, default=4, help="candidate requests before a limit can trip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--tail-s", type=float, default=1.5, help="traffic kept after the rollback")
    parser.add_argument("--timeout-s", type=float, default=25.0)
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    results = run(args)
    command = ".venv/bin/python bench/rollback.py" + (" " + " ".join(argv) if argv else "")
    write_report(results, args, command, started, time.monotonic() - t0)
    worst_s = max(s.rollback_s() for s in results)
    worst_share = max(s.bad_share_pct() for s in results)
    print(f"worst_rollback_s={worst_s:.2f} worst_bad_share_pct={worst_share:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
