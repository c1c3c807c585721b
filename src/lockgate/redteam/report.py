"""Red-team reports: JSON (everything), Markdown and a self-contained HTML page (no JS, no external
assets), built from the same pieces as the evaluation report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from lockgate.evals.report import BAD, CSS, GOOD, bar_chart, html_table, md_cell, pct, write_report_files

RATE_HEADERS = ["", "attacks", "succeeded", "ASR", "95% CI", "blocked by guards (input/output)", "resisted", "errors"]
DIFF_HEADERS = ["category", "previous ASR", "ASR", "change", "test", "p-value", "flag"]
ATTACK_HEADERS = ["attack", "category", "strategy", "outcome", "prompt", "answer (excerpt)", "verdict"]
PROMPT_CHARS, ANSWER_CHARS = 300, 400
PAIRING = ("McNemar's exact test where both runs drew the same attacks (paired), else a two-proportion z-test; "
           "'worse' when the rate went up.")


def _ci(m: dict[str, Any]) -> str:
    low, high = m["asr_ci95"]
    return f"[{low * 100:.1f}%, {high * 100:.1f}%]"


def _rate_cells(name: str, m: dict[str, Any]) -> list[str]:
    return [name, str(m["n"]), str(m["succeeded"]), pct(m["asr"]), _ci(m),
            f"{m['blocked']} ({m['blocked_input']}/{m['blocked_output']})", str(m["resisted"]), str(m["errors"])]


def _rate_rows(report: dict[str, Any], group: str) -> list[list[str]]:
    rows = [_rate_cells(name, m) for name, m in report["metrics"][group].items()]
    return [*rows, _rate_cells("(all)", report["metrics"]["overall"])]


def _delta(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f} pts"


def _flag(row: dict[str, Any]) -> str:
    if row["significant"]:
        return "WORSE (significant)"
    return "worse" if row["worse"] else ""


def _diff_rows(d: dict[str, Any]) -> list[list[str]]:
    return [[c, pct(r["previous_asr"]), pct(r["asr"]), _delta(r["delta"]), r.get("test") or "-",
             "-" if r["p_value"] is None else f"{r['p_value']:.3g}", _flag(r)]
            for c, r in [*d["categories"].items(), ("(all)", d["overall"])]]


def _title(report: dict[str, Any]) -> str:
    r = report["release"]
    return f"Red team: {r['id']} ({r['label']})"


def _headline(report: dict[str, Any]) -> str:
    m, g = report["metrics"]["overall"], report["gate"]
    verdict = "PASS" if report["passed"] else "FAIL"
    return (f"{verdict}: attack success rate {pct(m['asr'])} (95% CI {_ci(m)}), {m['succeeded']} of {m['judged']} "
            f"judged attacks succeeded; limit {pct(g['limit'])}. {m['blocked']} blocked by guards, "
            f"{m['errors']} errors. Seed {report['seed']}.")


def _verdict(a: dict[str, Any]) -> str:
    return f"{a['outcome']}: {a['reason']}"


def summary_text(report: dict[str, Any]) -> str:
    """A short table for the terminal."""
    rows = [["category", *RATE_HEADERS[1:]], *_rate_rows(report, "categories")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_title(report)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    d = report.get("diff")
    if d:
        changes = ", ".join(f"{c} {_delta(r['delta'])}{' (worse)' if r['worse'] else ''}"
                            for c, r in d["categories"].items())
        lines.append(f"vs {d['previous']['id']}: {changes or 'no category in common'}")
    lines.append(_headline(report))
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    out = [f"# {_title(report)}", "", f"**{_headline(report)}**", ""]
    if not report["canary_planted"]:
        out += ["The release has no `system_prompt_leak` output guard, so no canary is planted in its system "
                "prompt: system-prompt extraction is judged by phrase overlap alone.", ""]
    for heading, group, first in (("Per category", "categories", "category"),
                                  ("Per strategy", "strategies", "strategy")):
        header = [first, *RATE_HEADERS[1:]]
        out += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in _rate_rows(report, group)]
        out.append("")
    d = report.get("diff")
    out += ["## Change from the previous release", ""]
    if d:
        out += [f"Against {d['previous']['id']} (seed {d['previous'].get('seed')}); {PAIRING}", "",
                "| " + " | ".join(DIFF_HEADERS) + " |", "|" + "---|" * len(DIFF_HEADERS)]
        out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in _diff_rows(d)]
    else:
        out.append("No earlier red-team run of another release of this route.")
    out += ["", f"## Attacks ({len(report['attacks'])})", "", "| " + " | ".join(ATTACK_HEADERS) + " |",
            "|" + "---|" * len(ATTACK_HEADERS)]
    for a in report["attacks"]:
        out.append("| " + " | ".join(md_cell(c) for c in [a["id"], a["category"], a["strategy"], a["outcome"],
                                                          a["prompt"][:PROMPT_CHARS], a["output"][:ANSWER_CHARS],
                                                          _verdict(a)]) + " |")
    return "\n".join(out) + "\n"


# Names break only after "_" or "." (see `_name`), never inside a word; prompts and answers wrap anywhere.
_EXTRA_CSS = """.attacks{font-size:13px}.attacks td:nth-child(-n+4){overflow-wrap:normal}
.succeeded td:nth-child(4){color:#c62828;font-weight:bold}
.blocked td:nth-child(4){color:#1565c0}.resisted td:nth-child(4){color:#2e7d32}
td pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:12px}"""


def _name(text: str) -> str:
    return html.escape(text).replace("_", "_<wbr>").replace(".", ".<wbr>")


def _attack_table(report: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ATTACK_HEADERS)
    rows = []
    for a in report["attacks"]:
        cells = [_name(a["id"]), _name(a["category"]), _name(a["strategy"]), html.escape(a["outcome"]),
                 f"<pre>{html.escape(a['prompt'][:PROMPT_CHARS])}</pre>",
                 f"<pre>{html.escape(a['output'][:ANSWER_CHARS])}</pre>", html.escape(a["reason"])]
        rows.append(f"<tr class='{html.escape(a['outcome'])}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table class='attacks'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    title = _title(report)
    limit = report["gate"]["limit"]
    chart = bar_chart([(c, m["asr"], BAD if (m["asr"] or 0.0) > limit else GOOD)
                       for c, m in report["metrics"]["categories"].items()], "attack success rate per category")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}{_EXTRA_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p><strong class='{'pass' if report['passed'] else 'fail'}'>{html.escape(_headline(report))}"
             "</strong></p>",
             "<h2>Attack success rate per category</h2>", chart,
             "<h2>Per category</h2>", html_table(["category", *RATE_HEADERS[1:]], _rate_rows(report, "categories")),
             "<h2>Per strategy</h2>", html_table(["strategy", *RATE_HEADERS[1:]], _rate_rows(report, "strategies")),
             "<h2>Change from the previous release</h2>"]
    d = report.get("diff")
    if d:
        parts += [f"<p>Against {html.escape(d['previous']['id'])} (seed {d['previous'].get('seed')}); "
                  f"{PAIRING}</p>", html_table(DIFF_HEADERS, _diff_rows(d))]
    else:
        parts.append("<p>No earlier red-team run of another release of this route.</p>")
    parts += [f"<h2>Attacks ({len(report['attacks'])})</h2>", _attack_table(report), "</body></html>"]
    return "\n".join(parts)


def write_reports(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    return write_report_files(report, out_dir, "redteam", render_markdown(report), render_html(report))
