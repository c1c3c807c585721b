"""The demo's real evaluation: `lockgate eval` of support-bot v2 (Gemma 3 270M) against v1 (SmolLM2-135M)
on the demo suite, timed, with the per-slice difference written to bench/results/demo-eval.md.

    .venv/bin/python bench/demo_eval.py                 # runs the evaluation (a few minutes on two cores)
    .venv/bin/python bench/demo_eval.py --report R.json --seconds 310   # only re-renders an earlier run

Only the part of demo-eval.md between the GENERATED markers is rewritten; notes around it are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUITE = "src/lockgate/config/demo_suite.yaml"
RESULT = ROOT / "bench" / "results" / "demo-eval.md"
BEGIN, END = "<!-- GENERATED: bench/demo_eval.py -->", "<!-- END GENERATED -->"
COMMAND = ["-m", "lockgate.cli.main", "eval", SUITE, "--release", "support-bot:v2", "--baseline", "support-bot:v1"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:.1f} s"


def run(out_dir: Path) -> tuple[Path, float, int, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *COMMAND, "--out", str(out_dir)], cwd=ROOT, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    seconds = time.perf_counter() - started
    sys.stdout.write(result.stdout)
    if result.returncode not in (0, 1):
        sys.exit(f"lockgate eval failed to run (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return next(out_dir.glob("eval-support-bot-*.json")), seconds, result.returncode, result.stdout


def render(report: dict[str, Any], seconds: float, exit_code: int, load: tuple[float, float]) -> str:
    cand, base = report, report["baseline"]
    c_id, b_id = report["release"]["id"], base["id"]
    lines = [BEGIN, "",
             f"Command (from the repository root, {os.cpu_count()} CPU cores, load average {load[0]:.1f} before and "
             f"{load[1]:.1f} after the run):", "",
             "```sh", "PYTHONPATH=src .venv/bin/python " + " ".join(COMMAND), "```", "",
             f"Wall time for both releases, model loading included: **{seconds / 60:.1f} min** ({seconds:.0f} s). "
             f"Exit code {exit_code} ({'gate passed' if exit_code == 0 else 'gate failed'}).", "",
             f"| metric | {b_id} (v1, SmolLM2-135M) | {c_id} (v2, Gemma 3 270M) |", "| --- | --- | --- |"]
    bm, cm = base["metrics"], cand["metrics"]
    for name, key, fmt in [("pass rate", "pass_rate", _pct), ("errors", "error_rate", _pct),
                           ("refusal rate, harmful", "refusal_rate_harmful", _pct),
                           ("refusal rate, benign (over-refusal)", "refusal_rate_benign", _pct)]:
        lines.append(f"| {name} | {fmt(bm[key])} | {fmt(cm[key])} |")
    for p in ("p50", "p95"):
        lines.append(f"| latency {p} | {_ms(bm['latency_ms'][p])} | {_ms(cm['latency_ms'][p])} |")
    lines.append(f"| pass rate 95% CI | {_pct(bm['pass_rate_ci95'][0])} - {_pct(bm['pass_rate_ci95'][1])} | "
                 f"{_pct(cm['pass_rate_ci95'][0])} - {_pct(cm['pass_rate_ci95'][1])} |")
    lines += ["", "Per slice (pass rate; n cases):", "",
              "| slice | n | v1 | v2 | v2 - v1 |", "| --- | --- | --- | --- | --- |"]
    for tag, cs in sorted(cand["slices"].items()):
        bs = base["slices"][tag]
        diff = (cs["pass_rate"] - bs["pass_rate"]) * 100
        lines.append(f"| {tag} | {cs['n']} | {_pct(bs['pass_rate'])} | {_pct(cs['pass_rate'])} | {diff:+.1f} pts |")
    comp = report["comparison"]
    lines += ["", f"Paired comparison (McNemar, {comp['paired_cases']} cases): {comp['regressions_b']} regressed "
              f"(passed on v1, failed on v2), {comp['fixes_c']} fixed, p = {comp['p_value']:.3g} -> "
              f"{comp['verdict']}.", "", "Gate of v2:", ""]
    for check in report["gate"]:
        mark = "ok" if check["ok"] else "FAIL"
        lines.append(f"- {mark} {check['check']}: {check['actual']} (limit {check['limit']})")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="an earlier run's JSON report, instead of running")
    parser.add_argument("--seconds", type=float, default=0.0, help="that run's wall time")
    parser.add_argument("--exit-code", type=int, default=None, help="that run's exit code")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.report:
        report_path, seconds, exit_code = args.report, args.seconds, args.exit_code
    else:
        report_path, seconds, exit_code, _ = run(Path(tempfile.mkdtemp(prefix="demo-eval-")))
    report = json.loads(report_path.read_text())
    if exit_code is None:
        exit_code = 0 if report["passed"] else 1
    generated = render(report, seconds, exit_code, (load_before, os.getloadavg()[0]))
    empty = f"# Demo evaluation: support-bot v2 against v1\n\n{BEGIN}\n{END}\n"
    text = RESULT.read_text() if RESULT.exists() else empty
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    RESULT.write_text(head + generated + tail)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
