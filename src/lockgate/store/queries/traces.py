"""Traces, the trace chain that links each stored trace, the windows live analysis reads, and retention."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import orjson

from lockgate.audit.chain import AUDIT_CHAIN, TRACE_CHAIN, AuditRecord, chain_hash, trace_link_fields
from lockgate.store import records
from lockgate.store.base import ReleaseWindow, RetentionCutoffs, TraceLink
from lockgate.store.engines import Connection
from lockgate.store.queries.chains import LAST_AUDIT, append_audit, next_link, set_head, stored_head
from lockgate.store.records import TRACE_COLUMNS
from lockgate.store.trace_facts import FACT_COLUMNS, trace_facts
from lockgate.store.transactions import Transactions, marks

_INSERT_TRACE = (f"INSERT INTO traces ({', '.join(TRACE_COLUMNS)}, body, {', '.join(FACT_COLUMNS)}) "
                 f"VALUES ({marks(range(len(TRACE_COLUMNS) + 1 + len(FACT_COLUMNS)))})")
_INSERT_LINK = ("INSERT INTO trace_chain (seq, trace_id, ts, route, body_sha256, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
_LAST_LINK = "SELECT seq, hash FROM trace_chain ORDER BY seq DESC LIMIT 1"
# Traces that say something about the release that served them: not a client's own mistake (4xx),
# unless an output guard stopped the answer (that 4xx is the release's doing).
_COUNTED = "(status < 400 OR status >= 500 OR guard_violation = 1)"


class TraceQueries(Transactions):
    def insert_traces(self, traces: list[dict[str, Any]]) -> int:
        """Stores the traces not stored before (idempotent on trace id, so a journal segment can be
        replayed, by any loader on any replica) and links each into the trace chain, in one transaction."""
        # Serialised and hashed before the write lock is taken: the lock is shared with every writer. The
        # link covers the stored text itself (verification hashes what is stored, never re-serialises),
        # so the fast serialiser is safe; sorted keys make equal traces equal text.
        prepared: list[tuple[str, tuple[Any, ...], str]] = []
        for t in traces:
            raw = orjson.dumps(t, option=orjson.OPT_SORT_KEYS)
            row = (*(t.get(col) for col in TRACE_COLUMNS), raw.decode("utf-8"), *trace_facts(t))
            prepared.append((str(t.get("trace_id")), row, hashlib.sha256(raw).hexdigest()))

        def insert(c: Connection) -> int:
            # A replayed segment brings traces that are stored already (or stored and since expired,
            # their link kept): those are neither stored nor chained again.
            seen = _known_trace_ids(c, [p[0] for p in prepared])
            fresh = []
            for p in prepared:
                if p[0] not in seen:
                    seen.add(p[0])
                    fresh.append(p)
            if not fresh:
                return 0
            c.executemany(_INSERT_TRACE, [p[1] for p in fresh])
            seq, prev = next_link(c, TRACE_CHAIN, _LAST_LINK)
            links = []
            for trace_id, row, body_sha256 in fresh:
                ts, route = row[1], row[2]
                digest = chain_hash(prev, trace_link_fields(seq, trace_id, ts, route, body_sha256))
                links.append((seq, trace_id, ts, route, body_sha256, prev, digest))
                seq, prev = seq + 1, digest
            c.executemany(_INSERT_LINK, links)
            set_head(c, TRACE_CHAIN, seq - 1, prev)
            return len(fresh)

        return self._write(insert, "traces")

    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]:
        args: tuple[Any, ...]
        if route is None:
            sql, args = "SELECT body FROM traces ORDER BY ts DESC LIMIT ?", (limit,)
        else:
            sql, args = "SELECT body FROM traces WHERE route = ? ORDER BY ts DESC LIMIT ?", (route, limit)
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [json.loads(r["body"]) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        row = self._read(lambda c: c.execute("SELECT body FROM traces WHERE trace_id = ?", (trace_id,)).fetchone())
        return json.loads(row["body"]) if row else None

    def count_traces(self) -> int:
        return int(self._read(lambda c: c.execute("SELECT COUNT(*) FROM traces").fetchone()[0]))

    def release_window(self, route: str, since: float, until: float | None = None, *,
                       with_latencies: bool = True) -> list[ReleaseWindow]:
        """Per (release, shadow or not): counts and latencies of the route's traces in [since, until).
        `with_latencies=False` leaves them out: reading every one of a long window's is the costly part."""
        until = until if until is not None else time.time() + 1
        args = (route, since, until)
        counts = self._read(lambda c: c.execute(
            "SELECT release, shadow_of IS NOT NULL AS shadow, COUNT(*) AS n, SUM(release_failed) AS failed, "
            "SUM(guard_violation) AS violations, SUM(grounding_failed) AS grounding, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens "
            f"FROM traces WHERE route = ? AND ts >= ? AND ts < ? AND release IS NOT NULL AND {_COUNTED} "
            "GROUP BY release, shadow_of IS NOT NULL", args).fetchall())
        latencies = [] if not with_latencies else self._read(lambda c: c.execute(
            "SELECT release, shadow_of IS NOT NULL AS shadow, latency_ms FROM traces "
            "WHERE route = ? AND ts >= ? AND ts < ? AND release IS NOT NULL AND status < 400", args).fetchall())
        by_key: dict[tuple[str, bool], list[float]] = {}
        for row in latencies:
            by_key.setdefault((row["release"], bool(row["shadow"])), []).append(row["latency_ms"] or 0.0)
        return [
            ReleaseWindow(
                release=r["release"], shadow=bool(r["shadow"]), requests=r["n"], failed=r["failed"] or 0,
                guard_violations=r["violations"] or 0, grounding_failures=r["grounding"] or 0,
                latencies_ms=tuple(sorted(by_key.get((r["release"], bool(r["shadow"])), ()))),
                prompt_tokens=r["prompt_tokens"] or 0, completion_tokens=r["completion_tokens"] or 0,
            )
            for r in counts
            if r["release"] is not None
        ]

    def traces_between(
        self, route: str, since: float, until: float | None = None, *, limit: int = 1000, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Trace bodies of a route in [since, until), oldest first (or newest first), at most `limit`."""
        until = until if until is not None else time.time() + 1
        order = "DESC" if newest_first else "ASC"
        rows = self._read(lambda c: c.execute(
            f"SELECT body FROM traces WHERE route = ? AND ts >= ? AND ts < ? ORDER BY ts {order} LIMIT ?",
            (route, since, until, int(limit))).fetchall())
        return [json.loads(r["body"]) for r in rows]

    # -- The trace chain ------------------------------------------------------------------------

    def iter_trace_links(self, *, with_bodies: bool = True) -> Iterator[TraceLink]:
        """Every link in seq order, a page at a time (no cursor is held between pages)."""
        if with_bodies:
            sql = ("SELECT ch.*, t.body, t.trace_id AS t_trace_id, "
                   + ", ".join(f"t.{col} AS t_{col}" for col in TRACE_COLUMNS[1:])
                   + " FROM trace_chain ch LEFT JOIN traces t ON t.trace_id = ch.trace_id")
        else:
            sql = "SELECT * FROM trace_chain ch"
        sql += " WHERE ch.seq > ? ORDER BY ch.seq LIMIT 2000"
        after = -1
        while True:
            def page(c: Connection, after: int = after) -> list[Any]:
                return c.execute(sql, (after,)).fetchall()

            rows = self._read(page)
            if not rows:
                return
            for r in rows:
                yield records.trace_link(r, with_bodies)
            after = rows[-1]["seq"]

    def unchained_traces(self, limit: int = 10) -> tuple[int, list[str]]:
        where = "FROM traces WHERE trace_id NOT IN (SELECT trace_id FROM trace_chain)"

        def query(c: Connection) -> tuple[int, list[str]]:
            (count,) = c.execute(f"SELECT COUNT(*) {where}").fetchone()
            sample = c.execute(f"SELECT trace_id {where} ORDER BY ts LIMIT ?", (limit,)).fetchall()
            return count, [r[0] for r in sample]

        return self._read(query)

    # -- Retention ------------------------------------------------------------------------------

    def expire_traces(self, cutoffs: RetentionCutoffs, *, actor: str) -> AuditRecord | None:
        if not cutoffs.deletes_anything():
            return None
        rules = _retention_rules(cutoffs)

        def expire(c: Connection) -> AuditRecord | None:
            run_seq, _ = next_link(c, AUDIT_CHAIN, LAST_AUDIT)  # the seq this run's record gets
            head = stored_head(c, TRACE_CHAIN)
            deleted = 0
            for where, args in rules:
                c.execute("UPDATE trace_chain SET expired_by = ? WHERE expired_by IS NULL AND trace_id IN "
                          f"(SELECT trace_id FROM traces WHERE {where})", [run_seq, *args])
                deleted += c.execute(f"DELETE FROM traces WHERE {where}", args).rowcount
            if deleted == 0:
                return None  # and nothing was marked either: the marks follow the same conditions
            details = {**cutoffs.as_details(), "deleted": deleted, "max_seq": head.seq if head else 0,
                       **_prune_trace_chain(c, cutoffs)}
            return append_audit(c, actor, "trace.retention", TRACE_CHAIN, details)

        return self._write(expire, "audit", "traces")


def _known_trace_ids(c: Connection, trace_ids: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(trace_ids), 500):  # well under every SQLite build's limit on parameters
        chunk = trace_ids[i : i + 500]
        for table in ("trace_chain", "traces"):
            known.update(r[0] for r in c.execute(f"SELECT trace_id FROM {table} WHERE trace_id IN ({marks(chunk)})",
                                                 chunk).fetchall())
    return known


def _retention_rules(cutoffs: RetentionCutoffs) -> list[tuple[str, list[Any]]]:
    """SQL conditions on the traces table, one per route with a cutoff and one for all other routes."""
    rules: list[tuple[str, list[Any]]] = [
        ("route = ? AND ts < ?", [route, cutoff]) for route, cutoff in cutoffs.by_route.items() if cutoff is not None
    ]
    if cutoffs.other_routes is not None:
        configured = list(cutoffs.by_route)
        if configured:
            rules.append((f"(route IS NULL OR route NOT IN ({marks(configured)})) AND ts < ?",
                          [*configured, cutoffs.other_routes]))
        else:
            rules.append(("ts < ?", [cutoffs.other_routes]))
    return rules


def _prune_trace_chain(c: Connection, cutoffs: RetentionCutoffs) -> dict[str, Any]:
    """Drops the oldest links once every one of them is expired and older than today's cutoffs,
    and returns the anchor (the last dropped link's seq and hash) for the audit record.

    Only a prefix goes, so what remains is still one unbroken chain that starts at the anchor. A link
    whose trace vanished without a retention run (expired_by NULL) is never dropped: it stays as
    evidence, and holds back pruning behind it. What the pruned part could have shown is gone with it;
    that is what deleting data means."""
    cases, args = [], []
    for route, cutoff in cutoffs.by_route.items():
        cases.append("WHEN ? THEN CAST(? AS DOUBLE PRECISION)")
        args += [route, cutoff]
    # The casts: PostgreSQL must know the CASE's type even when every cutoff is None.
    cutoff_sql = (f"CASE route {' '.join(cases)} ELSE CAST(? AS DOUBLE PRECISION) END" if cases
                  else "CAST(? AS DOUBLE PRECISION)")
    args.append(cutoffs.other_routes)
    (first_kept,) = c.execute(
        "SELECT MIN(seq) FROM trace_chain WHERE expired_by IS NULL OR NOT COALESCE(ts < " + cutoff_sql + ", FALSE)",
        args,
    ).fetchone()
    if first_kept is None:
        (first_kept,) = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM trace_chain").fetchone()
    through = first_kept - 1
    anchor = c.execute("SELECT hash FROM trace_chain WHERE seq = ?", (through,)).fetchone()
    if anchor is None:  # nothing to prune, or a gap where the anchor should be: keep everything
        return {"pruned_through": None, "anchor_hash": None}
    c.execute("DELETE FROM trace_chain WHERE seq <= ?", (through,))
    return {"pruned_through": through, "anchor_hash": anchor["hash"]}
