"""How fast a route change made through one replica reaches the others.

Three `lockgate serve` replicas (one worker each) share one PostgreSQL database and one Redis, as in
tests/test_replicas.py. Through replica 0's admin API the benchmark alternately starts a rollout
(candidate at 100%) and rolls it back, `--changes` times; after each change, one thread per other
replica sends requests back to back (keep-alive, a few milliseconds each) until the answer comes from
the new release, and records the time from the admin call's answer to that first answer.

Two set-ups in one run:
  notices   Redis configured, `server.state_poll_s: 60`: only Redis's change notices can deliver a change
  polling   no Redis, the default `server.state_poll_s: 0.25`: each worker re-reads route state itself

Run: .venv/bin/python bench/replicas.py   (about a minute; writes bench/results/replicas.md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import Processes, free_port, machine, wait_http, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = REPO / "bench" / "results" / "replicas.md"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"

CONFIG = """
version: 1
server:
  default_key_rate_limit: {{requests_per_minute: 1000000, tokens_per_minute: 100000000}}
  state_poll_s: {poll}
backends:
  up: {{kind: openai, base_url: {upstream}}}
routes:
  bench:
    serve: v1
    releases:
      v1: {{backend: up, model: ok}}
      v2: {{backend: up, model: ok, system_prompt: candidate}}
    plans:
      default:
        steps: [{{canary: {{weight: 100}}}}, {{pause: {{}}}}, {{promote: {{}}}}]
{redis}
"""


def cli(data_dir: Path, config: Path, env: dict[str, str], *args: str) -> str:
    import subprocess

    out = subprocess.run([PY, "-m", "lockgate.cli.main", "--data-dir", str(data_dir), "--config", str(config), *args],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, **env})
    if out.returncode != 0:
        raise RuntimeError(f"lockgate {' '.join(args)}: {out.stderr}")
    return out.stdout


def admin(base: str, key: str, path: str, body: dict) -> None:
    req = urllib.request.Request(base + "/admin/v1" + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    urllib.request.urlopen(req, timeout=30).read()


def wait_until_served(base: str, key: str, release: str, timeout_s: float = 10.0) -> float:
    """Requests back to back until `release` answers; seconds from the call to that answer's arrival."""
    started = time.perf_counter()
    with httpx.Client(timeout=10) as client:
        while time.perf_counter() - started < timeout_s:
            r = client.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                            json={"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
            if r.headers.get("x-lockgate-release") == release:
                return time.perf_counter() - started
    raise RuntimeError(f"{base} still not serving {release} after {timeout_s}s")


def run_setup(name: str, *, redis: bool, changes: int, upstream: str, procs: Processes, work: Path) -> list[float]:
    database = f"lockgate_bench_replicas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        env = {"LOCKGATE_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + database, "LOCKGATE_LOG_LEVEL": "WARNING"}
        redis_yaml = f"redis:\n  url: {REDIS_URL}\n  prefix: bench-{uuid.uuid4().hex[:8]}\n" if redis else ""
        config = work / f"{name}.yaml"
        config.write_text(CONFIG.format(poll=60 if redis else 0.25, upstream=upstream, redis=redis_yaml))
        key = cli(work / f"{name}-0", config, env, "keys", "create", "--name", "app").strip().splitlines()[-1]
        deployer = cli(work / f"{name}-0", config, env, "keys", "create", "--name", "dee", "--role",
                       "deployer").strip().splitlines()[-1]
        bases = []
        for i in range(3):
            port, log = free_port(), work / f"{name}-{i}.log"
            proc = procs.spawn([PY, "-m", "lockgate.cli.main", "serve", "--data-dir", str(work / f"{name}-{i}"),
                                "--config", str(config), "--port", str(port), "--workers", "1"], log, env)
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
            bases.append(f"http://127.0.0.1:{port}")
        delays: list[float] = []
        for n in range(changes):
            start = n % 2 == 0
            admin(bases[0], deployer, "/rollouts/bench/" + ("start" if start else "rollback"),
                  {"candidate": "v2"} if start else {"reason": "benchmark"})
            release = "bench@2" if start else "bench@1"
            with ThreadPoolExecutor(len(bases) - 1) as pool:  # every other replica watched at once
                found = list(pool.map(partial(wait_until_served, key=key, release=release), bases[1:]))
            delays.extend(found)
            print(f"{name} change {n}: {' '.join(f'{d * 1000:.1f} ms' for d in found)}", flush=True)
        return delays
    finally:
        procs.stop_all()  # this set-up's replicas, before the next set-up starts
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def summary(delays: list[float]) -> str:
    ms = sorted(d * 1000 for d in delays)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"{statistics.median(ms):.1f} | {p95:.1f} | {ms[-1]:.1f} | {len(ms)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20, help="route changes per set-up (default 20)")
    args = parser.parse_args(argv)
    command = "PYTHONPATH=src .venv/bin/python bench/replicas.py" + (f" --changes {args.changes}"
                                                                     if args.changes != 20 else "")
    started, cpu, load = dt.datetime.now(dt.UTC), machine(), os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="lockgate-replicas-"))
    procs = Processes()
    results = {}
    try:
        port, log = free_port(), work / "upstream.log"
        upstream = procs.spawn([PY, "-m", "lockgate.devtools.fake_upstream", "--port", str(port)], log)
        wait_port(port, upstream, log)
        for name, redis in (("notices", True), ("polling", False)):
            results[name] = run_setup(name, redis=redis, changes=args.changes, upstream=f"http://127.0.0.1:{port}/v1",
                                      procs=Processes(), work=work)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# A route change through one replica, seen by the others",
        "",
        "Three `lockgate serve` replicas (one worker each) on one PostgreSQL database; through replica 0's admin",
        "API, a rollout is started (candidate at 100%) and rolled back in turn. Per change and per other replica:",
        "the time from the admin call's answer to the first answer from the new release, found by requests sent",
        "back to back (a few ms each, so a delay is known to within one request). Method and code: bench/replicas.py.",
        "",
        f"Command: `{command}` ({started:%Y-%m-%d %H:%M} UTC; {cpu['nproc']} CPUs, {cpu['cpu']}; "
        f"load average {load:.1f} at the start)",
        "",
        "| set-up | median ms | p95 ms | max ms | changes seen |",
        "| --- | --- | --- | --- | --- |",
        f"| notices: Redis, database poll every 60 s | {summary(results['notices'])} |",
        f"| polling: no Redis, database poll every 0.25 s | {summary(results['polling'])} |",
        "",
        "With Redis, every change arrived as a notice (a poll would have taken up to a minute); without it, a",
        "change waits for each worker's next poll of the database.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    worst = max(results["notices"]) * 1000
    print(f"notice_max_ms={worst:.1f} poll_max_ms={max(results['polling']) * 1000:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
