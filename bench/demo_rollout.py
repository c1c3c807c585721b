"""The demo's real candidate, Gemma 3 270M (support-bot v2), rolled out over SmolLM2 (v1) by the
`quick` plan: shadow, canary, analysis on live traffic, then promotion or rollback, all decided by
the gateway's own analysis. Traffic is generated from the demo suite's questions.

Run: .venv/bin/python bench/demo_rollout.py   (a few minutes; writes bench/results/demo-rollout.md)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import Processes, free_port, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = REPO / "bench" / "results" / "demo-rollout.md"
SUITE = REPO / "src" / "lockgate" / "config" / "demo_suite.yaml"


def cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run([PY, "-m", "lockgate.cli.main", "--data-dir", str(data_dir), *args],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"lockgate {' '.join(args)}: {out.stderr}")
    return out.stdout


def questions() -> list[str]:
    cases = yaml.safe_load(SUITE.read_text())["cases"]
    return [c["messages"][-1]["content"] for c in cases if c.get("messages")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2, help="concurrent simulated users")
    parser.add_argument("--timeout-s", type=float, default=1200)
    parser.add_argument("--resumes", type=int, default=3, help="resume a rollout paused as Inconclusive, N times")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lockgate-demo-rollout-"))
    procs = Processes()
    stop = threading.Event()
    served: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    timeline: list[str] = []
    try:
        data_dir = work / "data"
        key = cli(data_dir, "keys", "create", "--name", "demo").strip().splitlines()[-1]
        port = free_port()
        log = work / "serve.log"
        gw = procs.spawn([PY, "-m", "lockgate.cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port),
                          "--workers", "1"], log)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/readyz", gw, log, timeout_s=300)
        qs = questions()

        def user(index: int) -> None:
            n = 0
            with httpx.Client(timeout=180) as client:
                while not stop.is_set():
                    n += 1
                    r = client.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                    json={"model": "support-bot", "user": f"demo-user-{index}-{n}", "max_tokens": 48,
                                          "messages": [{"role": "user", "content": qs[(index * 7 + n) % len(qs)]}]})
                    statuses[r.status_code] += 1
                    served[r.headers.get("x-lockgate-release", "none")] += 1

        threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(10)
        cli(data_dir, "rollout", "start", "support-bot", "--candidate", "v2", "--plan", "quick", "--as", "demo")
        last_step = None
        resumes = 0
        while time.monotonic() - t0 < args.timeout_s:
            state = json.loads(cli(data_dir, "rollout", "status", "support-bot", "--json"))
            rollout = state["rollout"]
            step = (rollout["status"], rollout["step_index"])
            if step != last_step:
                elapsed = time.monotonic() - t0
                timeline.append(f"{elapsed:6.0f} s  {rollout['status']}, step {rollout['step_index'] + 1}, "
                                f"candidate {rollout['canary_weight']:g}%, shadow {rollout['shadow_percent']:g}%")
                print(timeline[-1], flush=True)
                last_step = step
            if rollout["status"] == "paused" and resumes < args.resumes:
                # Too little traffic to judge (the real models answer in seconds, not milliseconds):
                # measure again, as an operator would with `lockgate rollout resume`.
                resumes += 1
                cli(data_dir, "rollout", "resume", "support-bot", "--as", "demo-operator")
                timeline.append(f"{time.monotonic() - t0:6.0f} s  resumed by the operator ({rollout['pause_reason']})")
                print(timeline[-1], flush=True)
                continue
            if rollout["status"] not in ("running", "awaiting_approval"):
                break
            time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=200)
        final_text = cli(data_dir, "rollout", "status", "support-bot")
        final = json.loads(cli(data_dir, "rollout", "status", "support-bot", "--json"))
    finally:
        stop.set()
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    runtime = time.monotonic() - t0
    outcome = final["rollout"]
    lines = [
        "# The demo's Gemma candidate through shadow and canary, on the real models", "",
        "Command: `.venv/bin/python bench/demo_rollout.py" + (" " + " ".join(argv) if argv else "") + "`  ",
        f"Run: {started:%Y-%m-%d %H:%M} UTC, {runtime:.0f} s, {args.clients} simulated users asking the demo suite's "
        "questions; `lockgate serve` (1 worker) with both in-process models; plan `quick` from the embedded demo.yaml.",
        "", "## Outcome", "",
        f"**{outcome['status']}**: {outcome.get('end_reason') or outcome.get('pause_reason')}",
        "", f"Responses: {dict(statuses)}; served by release: {dict(served)}", "",
        "## Timeline", "", "```", *timeline, "```", "", "## Final status (`lockgate rollout status support-bot`)", "",
        "```", final_text.rstrip(), "```", "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"outcome={outcome['status']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
