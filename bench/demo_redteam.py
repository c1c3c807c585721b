"""The demo's real red-team run: `lockgate redteam` against support-bot v1 (SmolLM2-135M), then v2
(Gemma 3 270M, diffed against v1's run), with the per-category rates written to bench/results/redteam.md.

    .venv/bin/python bench/demo_redteam.py --patient               # runs both (minutes on two cores)
    .venv/bin/python bench/demo_redteam.py --reports DIR --seconds 600 900   # only re-renders earlier reports

Only the part of redteam.md between the GENERATED markers is rewritten; notes around it are kept.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_eval import patient_config  # noqa: E402 - a sibling script, not a package

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "redteam.md"
BEGIN, END = "<!-- GENERATED: bench/demo_redteam.py -->", "<!-- END GENERATED -->"
RELEASES = ("support-bot:v1", "support-bot:v2")
MODELS = {"v1": "SmolLM2-135M", "v2": "Gemma 3 270M"}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _ci(m: dict[str, Any]) -> str:
    low, high = m["asr_ci95"]
    return f"{low * 100:.1f}% - {high * 100:.1f}%"


def command(release: str, args: argparse.Namespace, config: Path | None, data_dir: Path, out: Path) -> list[str]:
    group = ["--data-dir", str(data_dir)] + (["--config", str(config)] if config else [])
    return ["-m", "lockgate.cli.main", *group, "redteam", "--release", release, "--seed", str(args.seed),
            "--attacks", str(args.attacks), "--concurrency", "1", "--out", str(out)]


def run(args: argparse.Namespace) -> tuple[Path, list[float], list[int]]:
    folder = Path(tempfile.mkdtemp(prefix="demo-redteam-"))
    config = patient_config(folder) if args.patient else None
    seconds, codes = [], []
    for release in RELEASES:  # v1 first: v2's run is diffed against it
        started = time.perf_counter()
        result = subprocess.run([sys.executable, *command(release, args, config, folder / "data", folder / "out")],
                                cwd=ROOT, text=True, capture_output=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        seconds.append(time.perf_counter() - started)
        sys.stdout.write(result.stdout)
        if result.returncode not in (0, 1):
            sys.exit(f"lockgate redteam failed to run (exit {result.returncode}):\n{result.stderr[-3000:]}")
        codes.append(result.returncode)
    return folder / "out", seconds, codes


def render(reports: list[dict[str, Any]], seconds: list[float], codes: list[int], args: argparse.Namespace,
           load: tuple[float, float]) -> str:
    shown = " ".join(command("RELEASE", args, Path("demo-patient.yaml") if args.patient else None,
                             Path("DATA"), Path("OUT")))
    lines = [BEGIN, "", f"Command, once per release (v1, then v2 with the same data folder; {os.cpu_count()} CPU "
             f"cores, load average {load[0]:.1f} before and {load[1]:.1f} after):", "",
             "```sh", "PYTHONPATH=src .venv/bin/python bench/demo_redteam.py"
             + (" --patient" if args.patient else "") + f" --attacks {args.attacks} --seed {args.seed}",
             f"# runs: PYTHONPATH=src .venv/bin/python {shown}", "```", ""]
    if args.patient:
        lines += ["(`demo-patient.yaml` is the embedded demo with one llama.cpp thread per model and 900 s "
                  "timeouts, see `patient_config` in bench/demo_eval.py; prompts, models, retrieval, guards and "
                  "generation parameters are unchanged.)", ""]
    for report, s, code in zip(reports, seconds, codes, strict=True):
        r, m = report["release"], report["metrics"]["overall"]
        lines.append(f"- {r['id']} ({r['label']}, {MODELS.get(r['label'], '?')}): {m['n']} attacks in "
                     f"{s / 60:.1f} min, ASR {_pct(m['asr'])} ({_ci(m)}), {m['blocked']} blocked by guards "
                     f"({m['blocked_input']} input, {m['blocked_output']} output), {m['errors']} errors; exit {code} "
                     f"(limit {_pct(report['max_asr'])}).")
    ids = [f"{r['release']['label']} ({MODELS.get(r['release']['label'], '?')})" for r in reports]
    for group, title in (("categories", "category"), ("strategies", "strategy")):
        lines += ["", f"Attack success rate per {title} (succeeded / judged, 95% Wilson interval; blocked by guards "
                  "in brackets):", "", f"| {title} | " + " | ".join(ids) + " |", "|---" * (len(ids) + 1) + "|"]
        for name in reports[0]["metrics"][group]:
            cells = []
            for report in reports:
                m = report["metrics"][group][name]
                cells.append(f"{_pct(m['asr'])} ({m['succeeded']}/{m['judged']}; {_ci(m)}) [{m['blocked']}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    diff = reports[-1].get("diff")
    if diff:
        lines += ["", f"Diff of {reports[-1]['release']['id']} against {diff['previous']['id']} (the same seed "
                  "drew the same attacks, so the test is paired):", "",
                  "| category | v1 ASR | v2 ASR | change | test | p | flag |", "|---|---|---|---|---|---|---|"]
        for name, row in [*diff["categories"].items(), ("(all)", diff["overall"])]:
            delta = "-" if row["delta"] is None else f"{row['delta'] * 100:+.1f} pts"
            p = "-" if row["p_value"] is None else f"{row['p_value']:.3g}"
            flag = "WORSE (significant)" if row["significant"] else "worse" if row["worse"] else ""
            lines.append(f"| {name} | {_pct(row['previous_asr'])} | {_pct(row['asr'])} | {delta} | {row.get('test')} "
                         f"| {p} | {flag} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patient", action="store_true", help="one thread per model, long timeouts "
                        "(see patient_config in bench/demo_eval.py)")
    parser.add_argument("--reports", type=Path, help="a folder with earlier runs' JSON reports, instead of running")
    parser.add_argument("--seconds", type=float, nargs=2, default=(0.0, 0.0), help="with --reports: their wall times")
    parser.add_argument("--load", type=float, nargs=2, default=None, help="with --reports: load averages")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.reports:
        out, seconds = args.reports, list(args.seconds)
        codes = []
    else:
        out, seconds, codes = run(args)
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("redteam-support-bot-*.json"))]
    codes = codes or [0 if r["passed"] else 1 for r in reports]
    load = tuple(args.load) if args.load else (load_before, os.getloadavg()[0])
    generated = render(reports, seconds, codes, args, load)
    empty = f"# Red team: the demo releases\n\n{BEGIN}\n{END}\n"
    text = RESULT.read_text() if RESULT.exists() else empty
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    RESULT.write_text(head + generated + tail)
    print(f"wrote {RESULT} (reports in {out})")


if __name__ == "__main__":
    main()
