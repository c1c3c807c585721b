"""`lockgate audit list|verify`: read the audit log, and prove it (and the trace chain) unaltered."""

from __future__ import annotations

import json
import sys
import time

import click

from lockgate.settings import Settings
from lockgate.store import Store, StoreUnavailable


def _open_store(ctx: click.Context) -> Store:
    from lockgate.gateway.runtime import open_store

    settings: Settings = ctx.find_root().obj["settings"]
    if settings.database is None and not settings.database_path.exists():
        click.echo(f"error: no Lockgate data in {settings.data_dir} (no {settings.database_path.name}); "
                   "pass --data-dir or set LOCKGATE_DATA_DIR to the gateway's data folder", err=True)
        sys.exit(2)
    try:
        return open_store(settings)
    except StoreUnavailable as exc:
        from lockgate.store.engines import redacted

        where = redacted(settings.database) if settings.database else settings.data_dir
        click.echo(f"error: cannot open the store at {where}: {exc}", err=True)
        sys.exit(2)


@click.group()
def audit() -> None:
    """Read the audit log and verify that nothing in it (or in the traces) was altered."""


@audit.command("list")
@click.option("--since", "since_seq", default=0, show_default=True, type=click.IntRange(min=0),
              help="Only records after this seq.")
@click.option("--action", default=None, help="Only this action (e.g. key.create, release.create, trace.retention).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, hashes included.")
@click.pass_context
def audit_list(ctx: click.Context, since_seq: int, action: str | None, as_json: bool) -> None:
    """Audit records, oldest first."""
    records = _open_store(ctx).list_audit(since_seq=since_seq, action=action)
    if as_json:
        for r in records:
            click.echo(json.dumps({**r.hashed_fields(), "prev_hash": r.prev_hash, "hash": r.hash}, ensure_ascii=False))
        return
    click.echo(f"{'SEQ':>6}  {'TIME':<19}  {'ACTOR':<18} {'ACTION':<18} {'TARGET':<24} DETAILS")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
        details = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                           for k, v in sorted(r.details.items()))
        click.echo(f"{r.seq:>6}  {when:<19}  {r.actor[:18]:<18} {r.action[:18]:<18} {r.target[:24]:<24} {details}")


@audit.command("verify")
@click.option("--expect-head", "expect_head", default=None, metavar="SEQ:HASH",
              help="A head printed by an earlier verify: proves the log up to it was not rewritten since.")
@click.pass_context
def audit_verify(ctx: click.Context, expect_head: str | None) -> None:
    """Check the audit log and the trace chain. Exit 0 intact, 1 tampered (each broken record named), 2 error."""
    from lockgate.audit.verify import check_expected_head, parse_expected_head, verify_store

    try:
        expected = parse_expected_head(expect_head) if expect_head else None
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    store = _open_store(ctx)
    try:
        result = verify_store(store)
        if expected is not None:
            mismatch = check_expected_head(expected, store.list_audit(since_seq=expected.seq - 1, limit=1))
            if mismatch is not None:
                result.problems.insert(0, mismatch)
    except StoreUnavailable as exc:
        click.echo(f"error: cannot read the store: {exc}", err=True)
        sys.exit(2)
    head = f"head {result.audit_head.seq}:{result.audit_head.hash}" if result.audit_head else "no head yet"
    click.echo(f"audit log: {result.audit_records} record(s), {head}")
    start = f"starts after link {result.trace_anchor.seq} (older links pruned by retention)" \
        if result.trace_anchor.seq else "starts at the first trace"
    click.echo(f"trace chain: {result.trace_links} link(s), {result.traces_expired} trace(s) deleted by retention, "
               f"{start}")
    if result.ok:
        click.echo("intact: every record and every trace is as it was written")
        return
    click.echo(f"TAMPERED: {len(result.problems) + result.problems_not_listed} problem(s)")
    for problem in result.problems:
        click.echo(f"  {problem}")
    if result.problems_not_listed:
        click.echo(f"  ... and {result.problems_not_listed} more")
    sys.exit(1)
