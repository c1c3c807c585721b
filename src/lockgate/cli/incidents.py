"""`lockgate incident open|list|show|ack|mitigate|resolve|postmortem`.

Exit codes: 0 done, 1 the change does not apply to the incident as it is (the message says why),
2 bad input or no store.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from lockgate.cli.context import operator, store_or_exit
from lockgate.config.alerts import SEVERITIES
from lockgate.incidents import lifecycle
from lockgate.store import IncidentRecord, Store

T = TypeVar("T")


def _who(ctx: click.Context, explicit: str | None) -> str:
    return operator(ctx, explicit)


def _run(action: Callable[[], T], *, bad_input: bool = False) -> T:
    try:
        return action()
    except lifecycle.IncidentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if bad_input else 1)


def _incident(store: Store, ref: str) -> IncidentRecord:
    return _run(lambda: lifecycle.get(store, lifecycle.parse_ref(ref)), bad_input=True)


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@click.group()
def incident() -> None:
    """Open, follow and resolve incidents; read their timeline; draft their postmortem."""


@incident.command("open")
@click.option("--title", required=True, help="What is wrong, in a line.")
@click.option("--severity", required=True, type=click.Choice(SEVERITIES),
              help="critical (ack within 15 min), high (1 h), medium (4 h), low (24 h).")
@click.option("--route", default=None, help="The route affected: its traces and changes fill the timeline.")
@click.option("--summary", default=None, help="More words on what is known.")
@click.option("--as", "actor", default=None, help="Who opens it (default: --actor, else your user name).")
@click.pass_context
def incident_open(ctx: click.Context, title: str, severity: str, route: str | None, summary: str | None,
                  actor: str | None) -> None:
    """Open an incident by hand (alerts open theirs with an `incident` action)."""
    store = store_or_exit(ctx)
    record = _run(lambda: lifecycle.open_incident(store, title=title, severity=severity, route=route,
                                                  opened_by=_who(ctx, actor), summary=summary), bad_input=True)
    click.echo(f"opened {record.ref} ({record.severity}): {record.title}; acknowledge by "
               f"{_when(record.response_due_at)} (`lockgate incident ack {record.incident_id}`)")


@incident.command("list")
@click.option("--status", type=click.Choice(["open", "mitigated", "resolved", "all"]), default="all",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def incident_list(ctx: click.Context, status: str, as_json: bool) -> None:
    """Incidents, newest first."""
    from dataclasses import asdict

    now = time.time()
    records = store_or_exit(ctx).list_incidents(status=None if status == "all" else status)
    if as_json:
        for r in records:
            click.echo(json.dumps(asdict(r) | {"ref": r.ref}))
        return
    click.echo(f"{'ID':<8} {'SEVERITY':<9} {'STATUS':<10} {'ROUTE':<14} {'OPENED':<19}  {'BY':<22} TITLE")
    for r in records:
        overdue = " OVERDUE" if r.acknowledged_at is None and r.status != "resolved" and now > r.response_due_at \
            else ""
        click.echo(f"{r.ref:<8} {r.severity:<9} {r.status:<10} {(r.route or '-')[:14]:<14} {_when(r.opened_at)}  "
                   f"{r.opened_by[:22]:<22} {r.title}{overdue}")


@incident.command("show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="The incident and its timeline as JSON.")
@click.pass_context
def incident_show(ctx: click.Context, incident_id: str, as_json: bool) -> None:
    """One incident with its timeline (audit log and traces) and failures per minute."""
    from lockgate.incidents import timeline as timelines

    store = store_or_exit(ctx)
    record = _incident(store, incident_id)
    timeline = timelines.build(store, record)
    if as_json:
        click.echo(json.dumps(timeline.as_json(), indent=2, ensure_ascii=False))
        return
    now = time.time()
    click.echo(f"{record.ref} [{record.severity}] {record.status.upper()}: {record.title}")
    click.echo(f"  route: {record.route or '-'}   opened {_when(record.opened_at)} by {record.opened_by}")
    click.echo(f"  response: {lifecycle.response_status(record, now)}")
    if record.mitigated_at:
        click.echo(f"  mitigated {_when(record.mitigated_at)}")
    if record.resolved_at:
        click.echo(f"  resolved {_when(record.resolved_at)} by {record.resolved_by}")
    if record.summary:
        click.echo(f"  {record.summary}")
    click.echo(f"\ntimeline ({_when(timeline.since)} .. {_when(timeline.until)}):")
    for entry in timeline.entries:
        who = f"[{entry.actor}] " if entry.actor else ""
        click.echo(f"  {_when(entry.ts)}  {entry.action:<24} {who}{entry.text}")
    totals = timeline.totals()
    if totals:
        click.echo("\nrequests in the window:")
        for release, (n, bad) in sorted(totals.items()):
            click.echo(f"  {release:<20} {n:>8} requests {bad:>7} failed ({bad / n:.1%})")
        failing = [b for b in timeline.buckets if b.failed]
        if failing:
            click.echo(f"\nfailed requests per {timeline.bucket_words}:")
            for b in failing:
                click.echo(f"  {_when(b.start)}  {b.release:<20} {b.failed:>6} of {b.requests}")


def _transition(name: str, doc: str, change: Callable[..., IncidentRecord], *, takes_note: bool) -> None:
    @click.argument("incident_id")
    @click.option("--as", "actor", default=None, help="Who acts (default: --actor, else your user name).")
    @click.pass_context
    def command(ctx: click.Context, incident_id: str, actor: str | None, note: str = "") -> None:
        store = store_or_exit(ctx)
        ref = _run(lambda: lifecycle.parse_ref(incident_id), bad_input=True)
        extra = {"note": note} if takes_note else {}
        record = _run(lambda: change(store, ref, actor=_who(ctx, actor), **extra))
        click.echo(f"{record.ref} {record.status}: {lifecycle.response_status(record, time.time())}")

    command.__doc__ = doc
    if takes_note:
        command = click.option("--note", default="", help="Why, or what was done, for the audit log.")(command)
    incident.command(name)(command)


_transition("ack", "Acknowledge: a person responds (what the response-time target measures).",
            lifecycle.acknowledge, takes_note=False)
_transition("mitigate", "The impact has stopped; the cause may not be fixed yet.", lifecycle.mitigate, takes_note=True)
_transition("resolve", "Close the incident.", lifecycle.resolve, takes_note=True)


@incident.command("postmortem")
@click.argument("incident_id")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Write the Markdown here (default: print it).")
@click.pass_context
def incident_postmortem(ctx: click.Context, incident_id: str, out_path: str | None) -> None:
    """A postmortem draft in Markdown, pre-filled with the summary, impact and timeline."""
    from lockgate.incidents import postmortem, timeline

    store = store_or_exit(ctx)
    record = _incident(store, incident_id)
    text = postmortem.render(timeline.build(store, record))
    if out_path is None:
        click.echo(text)
        return
    Path(out_path).write_text(text, encoding="utf-8")
    click.echo(f"wrote the postmortem draft of {record.ref} to {out_path}")
