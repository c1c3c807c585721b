"""The audit log and the chains' heads (lockgate.audit.chain): links are appended only under the
chain's write lock, so two writers, in any process on any machine, never chain onto the same link."""

from __future__ import annotations

import time
from typing import Any

from lockgate.audit.chain import AUDIT_CHAIN, GENESIS_HASH, AuditRecord, canonical_json, chain_hash
from lockgate.store import records
from lockgate.store.base import ChainHead
from lockgate.store.engines import Connection
from lockgate.store.transactions import Transactions

LAST_AUDIT = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"


class AuditQueries(Transactions):
    def append_audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord:
        return self._write(lambda c: append_audit(c, actor, action, target, details), "audit")

    def list_audit(self, since_seq: int = 0, limit: int | None = None, action: str | None = None) -> list[AuditRecord]:
        sql, args = "SELECT * FROM audit_log WHERE seq > ?", list[Any]([since_seq])
        if action is not None:
            sql, args = sql + " AND action = ?", [*args, action]
        sql += " ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [records.audit(r) for r in rows]

    def chain_head(self, chain: str) -> ChainHead | None:
        return self._read(lambda c: stored_head(c, chain))


def stored_head(c: Connection, chain: str) -> ChainHead | None:
    row = c.execute("SELECT seq, hash FROM chain_heads WHERE chain = ?", (chain,)).fetchone()
    return ChainHead(row["seq"], row["hash"]) if row else None


def set_head(c: Connection, chain: str, seq: int, digest: str) -> None:
    c.execute("INSERT INTO chain_heads (chain, seq, hash) VALUES (?, ?, ?) "
              "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (chain, seq, digest))


def next_link(c: Connection, chain: str, last_sql: str) -> tuple[int, str]:
    """The seq and previous hash for the chain's next link. The head wins over the table's last row
    when it is ahead (rows were cut from the tail: the next link then leaves a visible gap); the
    last row wins when it is ahead (rows written by something else; refusing to append would only
    stop the log, and verification reports those rows' hashes if they do not fit)."""
    head = stored_head(c, chain)
    last = c.execute(last_sql).fetchone()
    if head is not None and (last is None or head.seq >= last["seq"]):
        return head.seq + 1, head.hash
    if last is not None:
        return last["seq"] + 1, last["hash"]
    return 1, GENESIS_HASH


def append_audit(c: Connection, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord:
    """Appends inside the caller's write transaction (holding the "audit" lock), so a change and its
    record commit together."""
    seq, prev = next_link(c, AUDIT_CHAIN, LAST_AUDIT)
    ts = time.time()
    fields = {"seq": seq, "ts": ts, "actor": actor, "action": action, "target": target, "details": details}
    digest = chain_hash(prev, fields)
    c.execute("INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (seq, ts, actor, action, target, canonical_json(details), prev, digest))
    set_head(c, AUDIT_CHAIN, seq, digest)
    return AuditRecord(seq, ts, actor, action, target, details, prev, digest)
