"""A postmortem draft in Markdown, pre-filled with what the store knows; people write the rest.

Filled in: the summary (severity, who opened it and when, response against its target, time to
mitigate and resolve), the impact (requests and failures per release in the timeline's window, the
worst minute), the timeline, and the failures per minute. Left empty, with headings: root cause,
contributing factors, what went well and badly, action items, lessons.
"""

from __future__ import annotations

import time

from lockgate.incidents.lifecycle import RESPONSE_TARGETS_S, duration_words, response_status
from lockgate.incidents.timeline import Timeline


def when(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts))


def render(timeline: Timeline, now: float | None = None) -> str:
    now = time.time() if now is None else now
    inc = timeline.incident
    opened_by = inc.opened_by + (f" (alert `{inc.alert}`)" if inc.alert else "")
    lines = [
        f"# Postmortem: {inc.ref} — {_cell(inc.title)}",
        "",
        f"_Draft written by `lockgate incident postmortem` on {when(now)} from the audit log and the traces; "
        "edit it freely._",
        "",
        "## Summary",
        "",
        "| | |",
        "| --- | --- |",
        f"| Incident | {inc.ref} |",
        f"| Severity | {inc.severity} (acknowledge within {duration_words(RESPONSE_TARGETS_S[inc.severity])}) |",
        f"| Status | {inc.status} |",
        f"| Route | {inc.route or '—'} |",
        f"| Opened | {when(inc.opened_at)} by {_cell(opened_by)} |",
        f"| Response | {_cell(response_status(inc, now))} |",
        f"| Mitigated | {_after(inc.mitigated_at, inc.opened_at)} |",
        f"| Resolved | {_after(inc.resolved_at, inc.opened_at)}"
        + (f" by {_cell(inc.resolved_by)}" if inc.resolved_by else "") + " |",
        "",
    ]
    if inc.summary:
        lines += [inc.summary, ""]
    lines += _impact(timeline)
    lines += ["## Timeline", "", "| Time | Source | Who | What |", "| --- | --- | --- | --- |"]
    lines += [f"| {when(e.ts)} | {e.source} | {_cell(e.actor or '')} | {_cell(e.text)} |" for e in timeline.entries]
    if not timeline.entries:
        lines.append("| | | | nothing recorded in the window |")
    lines += [""]
    failing = [b for b in timeline.buckets if b.failed]
    if failing:
        lines += [f"### Failed requests per {timeline.bucket_words}", "",
                  "| From | Release | Requests | Failed |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {when(b.start)} | {b.release} | {b.requests} | {b.failed} |" for b in failing]
        lines.append("")
    for heading in ("Root cause", "Contributing factors", "What went well", "What went wrong"):
        lines += [f"## {heading}", "", "_To be written._", ""]
    lines += ["## Action items", "", "| Action | Owner | Due | Ticket |", "| --- | --- | --- | --- |",
              "| | | | |", "", "## Lessons learned", "", "_To be written._", ""]
    return "\n".join(lines)


def _impact(timeline: Timeline) -> list[str]:
    inc = timeline.incident
    if inc.route is None:
        return ["## Impact", "", "_No route named: no trace statistics. Describe the impact here._", ""]
    lines = ["## Impact", "", f"Requests served on route `{inc.route}` from {when(timeline.since)} to "
             f"{when(timeline.until)} (shadow copies excluded; client errors not counted):", "",
             "| Release | Requests | Failed | Error rate |", "| --- | ---: | ---: | ---: |"]
    totals = timeline.totals()
    for release, (n, bad) in sorted(totals.items()):
        lines.append(f"| {release} | {n} | {bad} | {bad / n:.1%} |")
    if not totals:
        lines.append("| — | 0 | 0 | — |")
    worst = max(timeline.buckets, key=lambda b: (b.failed, b.requests), default=None)
    if worst is not None and worst.failed:
        lines += ["", f"Worst {timeline.bucket_words}: from {when(worst.start)}, {worst.failed} of "
                  f"{worst.requests} requests to {worst.release} failed ({worst.failed / worst.requests:.0%})."]
    return [*lines, ""]


def _after(ts: float | None, opened_at: float) -> str:
    return "—" if ts is None else f"{when(ts)} ({duration_words(ts - opened_at)} after opening)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
