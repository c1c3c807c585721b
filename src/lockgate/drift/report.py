"""A drift report as a terminal table, a JSON document and an HTML page with one plot per feature.

The plots are inline SVG written here (as in the evaluation report): a page that opens anywhere,
offline, with no JavaScript and no plotting library to install for two kinds of chart.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from lockgate.drift.analysis import DriftReport, FeatureResult
from lockgate.drift.stats import Verdict

_STAT_SYMBOL = {"ks": "D", "chi-square": "X2", "fisher": "OR"}
REF_COLOR, CUR_COLOR = "#1565c0", "#ef6c00"


def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 10 ** 5):
        return f"{v:.2e}"
    return f"{v:.{digits}f}"


def _cells(f: FeatureResult) -> list[str]:
    t = f.test
    if t is None or f.verdict is Verdict.INSUFFICIENT:
        n_ref = str(t.n_reference) if t else "-"
        n_cur = str(t.n_current) if t else "-"
        return [f.name, f.kind, n_ref, n_cur, "-", "-", "-", "-", f.verdict.value.upper()]
    statistic = f"{t.test} {_STAT_SYMBOL.get(t.test, '')}={_num(t.statistic)}"
    return [f.name, f.kind, str(t.n_reference), str(t.n_current), statistic, _num(t.p_value),
            f"{_num(t.score)} {t.score_name}", _num(t.threshold, 2), f.verdict.value.upper()]


HEADERS = ["FEATURE", "KIND", "N REF", "N CUR", "TEST", "P-VALUE", "SCORE", "THRESHOLD", "VERDICT"]


def _compared(report: DriftReport) -> list[FeatureResult]:
    return [f for f in report.features if f.verdict is not Verdict.UNAVAILABLE]


def _unavailable_lines(report: DriftReport) -> list[str]:
    """Features one window lacks, one line per reason rather than a row each (a suite has no outputs,
    no token counts and no guard scores: that would be a table of blanks)."""
    by_note: dict[str, list[str]] = {}
    for f in report.features:
        if f.verdict is Verdict.UNAVAILABLE:
            by_note.setdefault(f.note, []).append(f.name)
    return [f"not compared, {note}: {', '.join(names)}" for note, names in by_note.items()]


def summary_text(report: DriftReport) -> str:
    rows = [HEADERS, *(_cells(f) for f in _compared(report))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    right = {2, 3, 5, 7}
    lines = [f"drift on route {report.route}",
             f"  reference: {report.reference}: {report.n_reference} requests",
             f"  current:   {report.current}: {report.n_current} requests", ""]
    for r in rows:
        lines.append("  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r))
                     .rstrip())
    for f in _compared(report):
        if f.note:
            lines.append(f"  {f.name}: {f.note}")
    lines += [f"note: {n}" for n in [*_unavailable_lines(report), *report.notes]]
    drifted = report.drifted
    verdict = report.verdict.value.upper()
    if drifted:
        verdict += f" in {len(drifted)} of {len(report.features)} features: " + ", ".join(f.name for f in drifted)
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


# -- HTML -----------------------------------------------------------------------------------------


def _legend(x: float, y: float) -> str:
    return (f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{REF_COLOR}" fill-opacity="0.45"/>'
            f'<text x="{x + 14}" y="{y}" font-size="11">reference</text>'
            f'<rect x="{x + 82}" y="{y - 9}" width="10" height="10" fill="{CUR_COLOR}" fill-opacity="0.45"/>'
            f'<text x="{x + 96}" y="{y}" font-size="11">current</text>')


def numeric_svg(plot: dict[str, Any], name: str) -> str:
    """Both windows' histograms, overlaid, as shares of their window."""
    edges, ref, cur = plot["edges"], plot["reference"], plot["current"]
    width, height, left, bottom, top = 440, 190, 44, 30, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([*ref, *cur, 1e-9])
    bar_w = plot_w / len(ref)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(name)}: reference and current histograms">', _legend(left, 14)]
    for series, color in ((ref, REF_COLOR), (cur, CUR_COLOR)):
        for i, share in enumerate(series):
            h = share / peak * plot_h
            parts.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{color}" fill-opacity="0.45"/>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>')
    for x, label, anchor in ((left, edges[0], "start"), (left + plot_w, edges[-1], "end")):
        parts.append(f'<text x="{x}" y="{top + plot_h + 14}" font-size="11" text-anchor="{anchor}">'
                     f'{html.escape(_num(label, 2))}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" font-size="11" text-anchor="end">{peak:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def categorical_svg(plot: dict[str, Any], name: str, limit: int = 12) -> str:
    """Paired bars: each category's share in the reference and in the current window."""
    cats = plot["categories"][:limit]
    ref, cur = plot["reference"][:limit], plot["current"][:limit]
    label_w, chart_w, bar_h, gap = 110, 280, 9, 8
    height = 24 + len(cats) * (2 * bar_h + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 60}" height="{height}" '
             f'role="img" aria-label="{html.escape(name)}: shares per category">', _legend(label_w, 14)]
    peak = max([*ref, *cur, 1e-9])
    for i, cat in enumerate(cats):
        y = 24 + i * (2 * bar_h + gap)
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h + 3}" font-size="11" text-anchor="end">'
                     f'{html.escape(str(cat)[:18])}</text>')
        for j, (share, color) in enumerate(((ref[i], REF_COLOR), (cur[i], CUR_COLOR))):
            w = share / peak * chart_w
            parts.append(f'<rect x="{label_w}" y="{y + j * bar_h}" width="{w:.1f}" height="{bar_h - 1}" '
                         f'fill="{color}" fill-opacity="0.7"/>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + j * bar_h + bar_h - 1}" font-size="9">'
                         f'{share:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.drift{color:#c62828;font-weight:bold}.ok{color:#2e7d32}.na{color:#777}
.features{display:flex;flex-wrap:wrap;gap:1.5em}.feature{border:1px solid #ddd;padding:.6em 1em;width:460px}
.feature h3{margin:.2em 0;font-size:1.05em}.feature p{margin:.2em 0;font-size:.9em}"""


def _verdict_class(v: Verdict) -> str:
    return {Verdict.DRIFT: "drift", Verdict.NO_DRIFT: "ok"}.get(v, "na")


def render_html(report: DriftReport) -> str:
    title = f"Drift on route {report.route}"
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.generated_at))
    v = report.verdict
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(f)[:-1])
        + f"<td class='{_verdict_class(f.verdict)}'>{html.escape(f.verdict.value)}</td></tr>"
        for f in _compared(report))
    head = "".join(f"<th>{html.escape(h.lower())}</th>" for h in HEADERS)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Reference: {html.escape(report.reference)} ({report.n_reference} requests)<br>"
             f"Current: {html.escape(report.current)} ({report.n_current} requests)<br>Generated {when}</p>",
             f"<p class='{_verdict_class(v)}'>Verdict: {html.escape(v.value)}"
             + (f" in {', '.join(html.escape(f.name) for f in report.drifted)}" if report.drifted else "") + "</p>",
             f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"]
    parts += [f"<p class='na'>{html.escape(n)}</p>" for n in [*_unavailable_lines(report), *report.notes]]
    parts.append("<p>A feature drifts when its score reaches the threshold and its test rejects at the alpha "
                 "shown: on small samples the test decides, on large ones the threshold.</p>")
    parts.append("<h2>Distributions</h2><div class='features'>")
    for f in _compared(report):
        parts.append(f"<div class='feature'><h3>{html.escape(f.name)} "
                     f"<span class='{_verdict_class(f.verdict)}'>{html.escape(f.verdict.value)}</span></h3>"
                     f"<p>{html.escape(f.description)}</p>")
        if f.test is not None and f.test.plot:
            t = f.test
            parts.append(f"<p>{html.escape(t.score_name)} {_num(t.score)} (threshold {_num(t.threshold, 2)}), "
                         f"{html.escape(t.test)} p={_num(t.p_value)} (alpha {_num(t.alpha)}), PSI {_num(t.psi)}, "
                         f"{t.regime} sample</p>")
            parts.append(numeric_svg(t.plot, f.name) if t.kind == "numeric" else categorical_svg(t.plot, f.name))
        elif f.note:
            parts.append(f"<p class='na'>{html.escape(f.note)}</p>")
        parts.append("</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def write_reports(report: DriftReport, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.generated_at))
    stem = f"drift-{report.route}-{stamp}"
    paths = {"json": out / f"{stem}.json", "html": out / f"{stem}.html"}
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths
