"""Guard accuracy and speed, measured honestly: the prompt-injection detector and the PII detector.

Run from the repository root (the bench extras must be installed: `.venv/bin/pip install -e '.[bench]'`):

    .venv/bin/python bench/guards.py            # full run, writes bench/results/guards.md
    .venv/bin/python bench/guards.py --quick    # a smoke run with fewer texts

The two halves live in `bench/guards_injection.py` (train on one source, test on the others with
near-duplicates removed, hard negatives, per language) and `bench/guards_pii.py` (presidio-evaluator
templates, no template shared between tuning and test, side by side with Presidio in the same run).
Each is runnable alone. The last line printed is
`injection_f1_ood=<x> injection_fpr_hard=<y> pii_f1_structured=<z> speedup_vs_presidio=<w>`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import guards_injection  # noqa: E402
import guards_pii  # noqa: E402

RESULTS = HERE / "results" / "guards.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer texts; numbers are indicative only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    command = "python bench/guards.py" + (" --quick" if args.quick else "")
    report = [
        "# Guard benchmark",
        "",
        f"- **Command:** `{command}` (from the repository root)",
        f"- **Date:** {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"- **Machine:** {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "",
    ]
    injection = guards_injection.run(report, quick=args.quick)
    report.append("")
    pii = guards_pii.run(report, quick=args.quick)
    elapsed = time.perf_counter() - started
    summary = (
        f"injection_f1_ood={injection['injection_f1_ood']:.4f} "
        f"injection_fpr_hard={injection['injection_fpr_hard']:.4f} "
        f"pii_f1_structured={pii['pii_f1_structured']:.4f} "
        f"speedup_vs_presidio={pii['speedup_vs_presidio']:.1f}"
    )
    report[3:3] = [f"- **Runtime:** {elapsed:.0f} s", "", "```", summary, "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
