"""Evaluation reports: JSON (everything), Markdown and a self-contained HTML page (no JS, no external assets)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _ci(m: dict[str, Any]) -> str:
    low, high = m["pass_rate_ci95"]
    return f"[{low * 100:.1f}%, {high * 100:.1f}%]"


def _val(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def slice_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("(all)", report["metrics"]), *report["slices"].items()]


def _metric_cells(m: dict[str, Any]) -> list[str]:
    lat = m["latency_ms"]
    return [str(m["n"]), pct(m["pass_rate"]), _ci(m), pct(m["error_rate"]), pct(m["refusal_rate_harmful"]),
            pct(m["refusal_rate_benign"]), _ms(lat["p50"]), _ms(lat["p95"]), _ms(lat["p99"]), str(m["total_tokens"])]


HEADERS = ["slice", "n", "pass", "95% CI", "errors", "refusal (harmful)", "refusal (benign)",
           "p50 ms", "p95 ms", "p99 ms", "tokens"]


def summary_text(report: dict[str, Any]) -> str:
    """A short table for the terminal."""
    rows = [HEADERS] + [[name, *_metric_cells(m)] for name, m in slice_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = [f"{report['suite']['name']} v{report['suite']['version']} on {report['release']['id']} "
             f"({report['release']['label']})"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if report.get("comparison"):
        c = report["comparison"]
        lines.append(f"vs baseline {report['baseline']['id']}: {c['regressions_b']} regressed, {c['fixes_c']} fixed, "
                     f"McNemar p={c['p_value']:.4g} -> {c['verdict']}")
    for check in report["gate"]:
        mark = "ok  " if check["ok"] else "FAIL"
        lines.append(f"{mark} {check['check']}: {_val(check['actual'])} (limit {_val(check['limit'])})"
                     + (f" {check['note']}" if check.get("note") else ""))
    lines.append(f"verdict: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)


def _failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["cases"] if not c["passed"]]


def _why(case: dict[str, Any]) -> str:
    if case["error"]:
        return case["error"]
    return "; ".join(a["error"] or a["reason"] for a in case["assertions"] if not a["passed"] or a["error"])


def md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any]) -> str:
    s, r = report["suite"], report["release"]
    out = [f"# Evaluation: {s['name']} v{s['version']} on {r['id']} ({r['label']})", "",
           f"**Verdict: {'PASS' if report['passed'] else 'FAIL'}** — {report['metrics']['passed']}/"
           f"{report['metrics']['n']} cases passed ({pct(report['metrics']['pass_rate'])}, 95% CI "
           f"{_ci(report['metrics'])}).", ""]
    out += ["## Gate", "", "| check | actual | limit | result |", "|---|---|---|---|"]
    for c in report["gate"]:
        out.append(f"| {c['check']} | {_val(c['actual'])} | {_val(c['limit'])} | "
                   f"{'ok' if c['ok'] else 'FAIL'}{' (' + c['note'] + ')' if c.get('note') else ''} |")
    out += ["", "## Slices", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for name, m in slice_rows(report):
        out.append("| " + " | ".join([md_cell(name), *_metric_cells(m)]) + " |")
    if report.get("comparison"):
        c = report["comparison"]
        out += ["", f"## Baseline comparison (McNemar) vs {report['baseline']['id']}", "",
                f"- paired cases: {c['paired_cases']}", f"- regressed (baseline pass, candidate fail): "
                f"{c['regressions_b']}", f"- fixed (baseline fail, candidate pass): {c['fixes_c']}",
                f"- exact p-value: {c['p_value']:.4g} (mid-p {c['p_value_mid']:.4g}); verdict: **{c['verdict']}**"]
        if c["regressed_cases"]:
            out.append(f"- regressed cases: {', '.join(c['regressed_cases'])}")
    fails = _failures(report)
    out += ["", f"## Failures ({len(fails)})", ""]
    if fails:
        out += ["| case | input | output | expected | why |", "|---|---|---|---|---|"]
        for c in fails:
            out.append(f"| {md_cell(c['id'])} | {md_cell(c['input'][:200])} | {md_cell(c['output'][:300])} | "
                       f"{md_cell(c['expected'] or '-')} | {md_cell(_why(c))} |")
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


def bar_chart(rows: list[tuple[str, float | None, str]], label: str) -> str:
    """A horizontal bar per (name, rate in [0, 1] or None, colour): inline SVG, no script."""
    bar_h, gap, label_w, chart_w = 22, 6, 200, 400
    height = len(rows) * (bar_h + gap) + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 70}" height="{height}" '
             f'role="img" aria-label="{html.escape(label)}">']
    for i, (name, rate, color) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = (rate or 0.0) * chart_w
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" font-size="13">'
                     f'{html.escape(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{chart_w}" height="{bar_h}" fill="#eee"/>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + chart_w + 6}" y="{y + bar_h * 0.7:.1f}" font-size="13">'
                     f'{pct(rate)}</text>')
    parts.append("</svg>")
    return "".join(parts)


GOOD, BAD = "#2e7d32", "#c62828"


def _bar_chart(report: dict[str, Any]) -> str:
    floor = report["suite"]["thresholds"].get("pass_rate") or 0
    return bar_chart([(name, m["pass_rate"], GOOD if (m["pass_rate"] or 0.0) >= floor else BAD)
                      for name, m in slice_rows(report)], "pass rate per slice")


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.pass{color:#2e7d32}.fail{color:#c62828}td{max-width:420px;
overflow-wrap:anywhere}"""


def render_html(report: dict[str, Any]) -> str:
    s, r = report["suite"], report["release"]
    verdict = "PASS" if report["passed"] else "FAIL"
    title = f"Evaluation: {s['name']} v{s['version']} on {r['id']} ({r['label']})"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p><strong class='{verdict.lower()}'>Verdict: {verdict}</strong> — {report['metrics']['passed']}/"
             f"{report['metrics']['n']} cases passed ({pct(report['metrics']['pass_rate'])}, 95% CI "
             f"{_ci(report['metrics'])}).</p>", "<h2>Gate</h2>",
             html_table(["check", "actual", "limit", "result"],
                    [[c["check"], _val(c["actual"]), _val(c["limit"]), ("ok" if c["ok"] else "FAIL")
                      + (f" ({c['note']})" if c.get("note") else "")] for c in report["gate"]]),
             "<h2>Pass rate per slice</h2>", _bar_chart(report), "<h2>Slices</h2>",
             html_table(HEADERS, [[name, *_metric_cells(m)] for name, m in slice_rows(report)])]
    if report.get("comparison"):
        c = report["comparison"]
        parts += [f"<h2>Baseline comparison (McNemar) vs {html.escape(report['baseline']['id'])}</h2>",
                  html_table(["paired", "regressed", "fixed", "p-value", "mid-p", "verdict"],
                         [[str(c["paired_cases"]), str(c["regressions_b"]), str(c["fixes_c"]),
                           f"{c['p_value']:.4g}", f"{c['p_value_mid']:.4g}", c["verdict"]]])]
    fails = _failures(report)
    parts.append(f"<h2>Failures ({len(fails)})</h2>")
    parts.append(html_table(["case", "input", "output", "expected", "why"],
                        [[c["id"], c["input"][:500], c["output"][:1000], c["expected"] or "-", _why(c)]
                         for c in fails]) if fails else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    return write_report_files(report, out_dir, "eval", render_markdown(report), render_html(report))


def write_report_files(report: dict[str, Any], out_dir: str | Path, kind: str, markdown: str,
                       html_text: str) -> dict[str, Path]:
    """A release's report as `KIND-ROUTE-VERSION.{json,md,html}` in `out_dir` (eval and red team alike)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{report['release']['route']}-{report['release']['version']}"
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "html": out / f"{stem}.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    paths["md"].write_text(markdown, encoding="utf-8")
    paths["html"].write_text(html_text, encoding="utf-8")
    return paths
