"""The demo's real evaluation: `lockgate eval` of support-bot v2 (Gemma 3 270M) against v1 (SmolLM2-135M)
on the demo suite, timed, with the per-slice difference written to bench/results/demo-eval.md.

    .venv/bin/python bench/demo_eval.py                 # runs the evaluation (a few minutes on two cores)
    .venv/bin/python bench/demo_eval.py --patient       # on a busy shared machine (see `patient_config`)
    .venv/bin/python bench/demo_eval.py --report R.json --seconds 310   # only re-renders an earlier run

Only the part of demo-eval.md between the GENERATED markers is rewritten; notes around it are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def patient_config(folder: Path) -> Path:
    """The embedded demo with one llama.cpp thread per model and 900 s timeouts. On a machine whose
    cores other work keeps busy, two spinning threads per model run slower than one, and the demo's
    60/90 s timeouts turn slow answers into fallbacks; the prompts, models, retrieval, guards and
    generation parameters, everything that decides what an answer says, are unchanged."""
    text = (ROOT / "src" / "lockgate" / "config" / "demo.yaml").read_text()
    text = text.replace("    context_length: 2048\n", "    context_length: 2048\n    threads: 1\n")
    text = re.sub(r"(total_s|first_token_s): \d+\n", r"\1: 900\n", text)
    path = folder / "demo-patient.yaml"
    path.write_text(text)
    return path


def run(out_dir: Path, config: Path | None) -> tuple[Path, float, int, str]:
    # --config is an option of the `lockgate` group, so it goes before the `eval` subcommand.
    group = ["--config", str(config)] if config else []
    patient = ["--concurrency", "1"] if config else []
    args = [*COMMAND[:2], *group, *COMMAND[2:], *patient, "--out", str(out_dir)]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=ROOT, text=True, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    seconds = time.perf_counter() - started
    sys.stdout.write(result.stdout)
    if result.returncode not in (0, 1):
        sys.exit(f"lockgate eval failed to run (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return next(out_dir.glob("eval-support-bot-*.json")), seconds, result.returncode, result.stdout


def render(report: dict[str, Any], seconds: float, exit_code: int, load: tuple[float, float], patient: bool) -> str:
    cand, base = report, report["baseline"]
    c_id, b_id = report["release"]["id"], base["id"]
    command = "PYTHONPATH=src .venv/bin/python " + " ".join(COMMAND)
    if patient:
        command = ("PYTHONPATH=src .venv/bin/python bench/demo_eval.py --patient\n# runs: " + command
                   + " --concurrency 1, with --config demo-patient.yaml (see patient_config)")
    lines = [BEGIN, "",
             f"Command (from the repository root, {os.cpu_count()} CPU cores, load average {load[0]:.1f} before and "
             f"{load[1]:.1f} after the run):", "",
             "```sh", command, "```", "",
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
        mark, actual = "ok" if check["ok"] else "FAIL", check["actual"]
        shown = f"{actual:.4g}" if isinstance(actual, float) else str(actual)
        lines.append(f"- {mark} {check['check']}: {shown} (limit {check['limit']:g})")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="an earlier run's JSON report, instead of running")
    parser.add_argument("--seconds", type=float, default=0.0, help="that run's wall time")
    parser.add_argument("--exit-code", type=int, default=None, help="that run's exit code")
    parser.add_argument("--patient", action="store_true", help="one thread per model, long timeouts, one case "
                        "at a time: for a machine other work keeps busy (see patient_config)")
    parser.add_argument("--load", type=float, nargs=2, default=None, help="with --report: that run's load averages")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.report:
        report_path, seconds, exit_code = args.report, args.seconds, args.exit_code
    else:
        folder = Path(tempfile.mkdtemp(prefix="demo-eval-"))
        config = patient_config(folder) if args.patient else None
        report_path, seconds, exit_code, _ = run(folder / "out", config)
    report = json.loads(report_path.read_text())
    if exit_code is None:
        exit_code = 0 if report["passed"] else 1
    load = tuple(args.load) if args.load else (load_before, os.getloadavg()[0])
    generated = render(report, seconds, exit_code, load, args.patient)
    empty = f"# Demo evaluation: support-bot v2 against v1\n\n{BEGIN}\n{END}\n"
    text = RESULT.read_text() if RESULT.exists() else empty
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    RESULT.write_text(head + generated + tail)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
