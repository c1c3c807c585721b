"""SQLite store: the embedded default, one file in the data folder.

WAL mode lets gateway workers, the CLI and the trace ingester read and write the same file at once.
Each thread gets its own connection, because sqlite3 connections must not cross threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from lockgate.audit.chain import (
    AUDIT_CHAIN,
    GENESIS_HASH,
    TRACE_CHAIN,
    AuditRecord,
    canonical_json,
    chain_hash,
    trace_link_fields,
)
from lockgate.releases import parse_release_id
from lockgate.store.base import (
    AlertStateRecord,
    ApiKeyRecord,
    ChainHead,
    EvidenceRecord,
    FeedbackRecord,
    FeedbackSummary,
    IncidentRecord,
    ReleaseRecord,
    ReleaseWindow,
    RetentionCutoffs,
    StoreUnavailable,
    TraceLink,
)
from lockgate.store.trace_facts import FACT_COLUMNS, trace_facts

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    routes TEXT,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER,
    created_at REAL NOT NULL,
    revoked_at REAL,
    role TEXT NOT NULL DEFAULT 'app'
);
CREATE TABLE IF NOT EXISTS releases (
    route TEXT NOT NULL,
    version INTEGER NOT NULL,
    label TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (route, version),
    UNIQUE (route, content_hash)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    route TEXT,
    release TEXT,
    key_id TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    latency_ms REAL,
    body TEXT NOT NULL,
    shadow_of TEXT,
    release_failed INTEGER NOT NULL DEFAULT 0,
    guard_violation INTEGER NOT NULL DEFAULT 0,
    grounding_failed INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS traces_ts ON traces (ts);
CREATE INDEX IF NOT EXISTS traces_route_ts ON traces (route, ts);
CREATE TABLE IF NOT EXISTS route_state (
    route TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    evidence_id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    passed INTEGER,
    summary TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_release ON evidence (route, version, kind);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- The last link each chain's writer wrote ('audit', 'traces'), updated in the same transaction as
-- the link: a log whose tail was cut no longer ends where its head says (lockgate.audit.verify).
CREATE TABLE IF NOT EXISTS chain_heads (
    chain TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
-- One link per stored trace, in the order traces were stored (lockgate.audit.chain). Kept when
-- retention deletes the trace itself (expired_by names that run's audit record), and pruned only
-- from the oldest end, behind an anchor recorded in the audit log.
CREATE TABLE IF NOT EXISTS trace_chain (
    seq INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    route TEXT,
    body_sha256 TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    expired_by INTEGER
);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    rating TEXT NOT NULL,
    score REAL NOT NULL,
    comment TEXT,
    user_ref TEXT,
    key_id TEXT,
    rater TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT,
    release TEXT,
    linked_at REAL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id, rater);
CREATE INDEX IF NOT EXISTS feedback_status ON feedback (status);
CREATE INDEX IF NOT EXISTS feedback_route_ts ON feedback (route, ts);
-- One row per alert rule, shared by every evaluator (lockgate.alerts): compare-and-set on revision.
CREATE TABLE IF NOT EXISTS alert_state (
    alert TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    state TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    firing_since REAL,
    last_notified REAL,
    details TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT,
    opened_at REAL NOT NULL,
    opened_by TEXT NOT NULL,
    response_due_at REAL NOT NULL,
    lookback_s REAL NOT NULL,
    alert TEXT,
    summary TEXT,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    mitigated_at REAL,
    resolved_at REAL,
    resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status);
"""

TRACE_COLUMNS = ("trace_id", "ts", "route", "release", "key_id", "status", "outcome", "latency_ms")
# Journal record field -> feedback column, in table order up to `status`.
FEEDBACK_FIELDS = ("feedback_id", "request_id", "ts", "rating", "score", "comment", "user", "key_id", "rater")
# Traces that say something about the release that served them: not a client's own mistake (4xx),
# unless an output guard stopped the answer (that 4xx is the release's doing).
_COUNTED = "(status < 400 OR status >= 500 OR guard_violation = 1)"

# Columns added after the first release of the schema, with their definitions, for in-place upgrades.
ADDED_COLUMNS = {
    "api_keys": {"role": "TEXT NOT NULL DEFAULT 'app'"},
    "traces": {
        "shadow_of": "TEXT",
        "release_failed": "INTEGER NOT NULL DEFAULT 0",
        "guard_violation": "INTEGER NOT NULL DEFAULT 0",
        "grounding_failed": "INTEGER NOT NULL DEFAULT 0",
        "prompt_tokens": "INTEGER NOT NULL DEFAULT 0",
        "completion_tokens": "INTEGER NOT NULL DEFAULT 0",
    },
}


class SqliteStore:
    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _run(self, fn: Any) -> Any:
        try:
            return fn(self._conn())
        except sqlite3.OperationalError as exc:
            # Locked, unreadable or vanished: all mean "try again later" to the caller.
            self._drop_connection()
            raise StoreUnavailable(str(exc)) from exc

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            finally:
                self._local.conn = None

    def migrate(self) -> None:
        def upgrade(c: sqlite3.Connection) -> None:
            c.executescript(SCHEMA)
            # IMMEDIATE: several workers migrate at start; the second must see the first one's columns.
            c.execute("BEGIN IMMEDIATE")
            try:
                for table, columns in ADDED_COLUMNS.items():
                    have = {row["name"] for row in c.execute(f"PRAGMA table_info({table})")}
                    for name, definition in columns.items():
                        if name not in have:
                            c.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        self._run(upgrade)

    # -- API keys -------------------------------------------------------------------------------

    def add_key(self, record: ApiKeyRecord) -> None:
        routes = json.dumps(list(record.routes)) if record.routes is not None else None
        self._run(
            lambda c: c.execute(
                "INSERT INTO api_keys (key_id, name, key_hash, routes, requests_per_minute, tokens_per_minute, "
                "created_at, revoked_at, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key_id,
                    record.name,
                    record.key_hash,
                    routes,
                    record.requests_per_minute,
                    record.tokens_per_minute,
                    record.created_at,
                    record.revoked_at,
                    record.role,
                ),
            )
        )

    def list_keys(self, include_revoked: bool = False) -> list[ApiKeyRecord]:
        sql = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        rows = self._run(lambda c: c.execute(sql + " ORDER BY created_at").fetchall())
        return [
            ApiKeyRecord(
                key_id=r["key_id"],
                name=r["name"],
                key_hash=r["key_hash"],
                routes=tuple(json.loads(r["routes"])) if r["routes"] is not None else None,
                requests_per_minute=r["requests_per_minute"],
                tokens_per_minute=r["tokens_per_minute"],
                created_at=r["created_at"],
                revoked_at=r["revoked_at"],
                role=r["role"],
            )
            for r in rows
        ]

    def revoke_key(self, key_id_or_name: str, at: float) -> bool:
        cur = self._run(
            lambda c: c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL",
                (at, key_id_or_name, key_id_or_name),
            )
        )
        return bool(cur.rowcount)

    # -- Releases -------------------------------------------------------------------------------

    def register_release(
        self, route: str, label: str, content_hash: str, content: dict[str, Any]
    ) -> ReleaseRecord:
        def register(c: sqlite3.Connection) -> ReleaseRecord:
            # IMMEDIATE takes the write lock first, so two processes cannot hand out the same version.
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT * FROM releases WHERE route = ? AND content_hash = ?", (route, content_hash)
                ).fetchone()
                if row is None:
                    (latest,) = c.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM releases WHERE route = ?", (route,)
                    ).fetchone()
                    c.execute(
                        "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?)",
                        (route, latest + 1, label, content_hash, json.dumps(content, sort_keys=True), time.time()),
                    )
                    row = c.execute(
                        "SELECT * FROM releases WHERE route = ? AND content_hash = ?", (route, content_hash)
                    ).fetchone()
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return _release(row)

        return self._run(register)

    def list_releases(self, route: str | None = None) -> list[ReleaseRecord]:
        if route is None:
            rows = self._run(lambda c: c.execute("SELECT * FROM releases ORDER BY route, version").fetchall())
        else:
            rows = self._run(
                lambda c: c.execute("SELECT * FROM releases WHERE route = ? ORDER BY version", (route,)).fetchall()
            )
        return [_release(r) for r in rows]

    def get_release(self, route: str, version: int) -> ReleaseRecord | None:
        row = self._run(
            lambda c: c.execute("SELECT * FROM releases WHERE route = ? AND version = ?", (route, version)).fetchone()
        )
        return _release(row) if row else None

    # -- Evidence --------------------------------------------------------------------------------

    def add_evidence(
        self, route: str, version: int, kind: str, passed: bool | None, summary: dict[str, Any]
    ) -> EvidenceRecord:
        now = time.time()
        body = json.dumps(summary, sort_keys=True, separators=(",", ":"))
        cur = self._run(
            lambda c: c.execute(
                "INSERT INTO evidence (route, version, kind, passed, summary, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (route, version, kind, None if passed is None else int(passed), body, now),
            )
        )
        return EvidenceRecord(cur.lastrowid, route, version, kind, passed, summary, now)

    def list_evidence(
        self, route: str, version: int | None = None, kind: str | None = None
    ) -> list[EvidenceRecord]:
        sql, args = "SELECT * FROM evidence WHERE route = ?", [route]
        if version is not None:
            sql, args = sql + " AND version = ?", [*args, version]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        rows = self._run(lambda c: c.execute(sql + " ORDER BY evidence_id", args).fetchall())
        return [_evidence(r) for r in rows]

    # -- Audit log -------------------------------------------------------------------------------

    def append_audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord:
        def append(c: sqlite3.Connection) -> AuditRecord:
            # IMMEDIATE: two writers must not both chain onto the same previous record.
            c.execute("BEGIN IMMEDIATE")
            try:
                record = _append_audit(c, actor, action, target, details)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return record

        return self._run(append)

    def list_audit(self, since_seq: int = 0, limit: int | None = None, action: str | None = None) -> list[AuditRecord]:
        sql, args = "SELECT * FROM audit_log WHERE seq > ?", [since_seq]
        if action is not None:
            sql, args = sql + " AND action = ?", [*args, action]
        sql += " ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self._run(lambda c: c.execute(sql, args).fetchall())
        return [
            AuditRecord(r["seq"], r["ts"], r["actor"], r["action"], r["target"], json.loads(r["details"]),
                        r["prev_hash"], r["hash"])
            for r in rows
        ]

    def chain_head(self, chain: str) -> ChainHead | None:
        return self._run(lambda c: _stored_head(c, chain))

    # -- Traces ---------------------------------------------------------------------------------

    def insert_traces(self, traces: list[dict[str, Any]]) -> int:
        # Serialised and hashed before the write lock is taken: the lock is shared with every writer. The
        # link covers the stored text itself (verification hashes what is stored, never re-serialises),
        # so the fast serialiser is safe; sorted keys make equal traces equal text.
        prepared = []
        for t in traces:
            raw = orjson.dumps(t, option=orjson.OPT_SORT_KEYS)
            row = (*(t.get(col) for col in TRACE_COLUMNS), raw.decode("utf-8"), *trace_facts(t))
            prepared.append((t.get("trace_id"), row, hashlib.sha256(raw).hexdigest()))

        def insert(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                # A replayed segment brings traces that are stored already (or stored and since
                # expired, their link kept): those are neither stored nor chained again.
                seen = _known_trace_ids(c, [p[0] for p in prepared])
                fresh = []
                for p in prepared:
                    if p[0] not in seen:
                        seen.add(p[0])
                        fresh.append(p)
                c.executemany(
                    f"INSERT INTO traces ({', '.join(TRACE_COLUMNS)}, body, {', '.join(FACT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (len(TRACE_COLUMNS) + 1 + len(FACT_COLUMNS)))})",
                    [p[1] for p in fresh],
                )
                seq, prev = _next_link(c, TRACE_CHAIN, "SELECT seq, hash FROM trace_chain ORDER BY seq DESC LIMIT 1")
                links = []
                for trace_id, row, body_sha256 in fresh:
                    ts, route = row[1], row[2]
                    digest = chain_hash(prev, trace_link_fields(seq, trace_id, ts, route, body_sha256))
                    links.append((seq, trace_id, ts, route, body_sha256, prev, digest))
                    seq, prev = seq + 1, digest
                c.executemany("INSERT INTO trace_chain (seq, trace_id, ts, route, body_sha256, prev_hash, hash) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)", links)
                if links:
                    _set_head(c, TRACE_CHAIN, seq - 1, prev)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return len(fresh)

        return self._run(insert)

    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]:
        if route is None:
            sql, args = "SELECT body FROM traces ORDER BY ts DESC LIMIT ?", (limit,)
        else:
            sql, args = "SELECT body FROM traces WHERE route = ? ORDER BY ts DESC LIMIT ?", (route, limit)
        rows = self._run(lambda c: c.execute(sql, args).fetchall())
        return [json.loads(r["body"]) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        row = self._run(lambda c: c.execute("SELECT body FROM traces WHERE trace_id = ?", (trace_id,)).fetchone())
        return json.loads(row["body"]) if row else None

    def release_window(self, route: str, since: float, until: float | None = None, *,
                       with_latencies: bool = True) -> list[ReleaseWindow]:
        """Per (release, shadow or not): counts and latencies of the route's traces in [since, until).
        `with_latencies=False` leaves them out: reading every one of a long window's is the costly part."""
        until = until if until is not None else time.time() + 1
        args = (route, since, until)
        counts = self._run(lambda c: c.execute(
            "SELECT release, shadow_of IS NOT NULL AS shadow, COUNT(*) AS n, SUM(release_failed) AS failed, "
            "SUM(guard_violation) AS violations, SUM(grounding_failed) AS grounding, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens "
            f"FROM traces WHERE route = ? AND ts >= ? AND ts < ? AND release IS NOT NULL AND {_COUNTED} "
            "GROUP BY release, shadow", args).fetchall())
        latencies = [] if not with_latencies else self._run(lambda c: c.execute(
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
        rows = self._run(lambda c: c.execute(
            f"SELECT body FROM traces WHERE route = ? AND ts >= ? AND ts < ? ORDER BY ts {order} LIMIT ?",
            (route, since, until, int(limit))).fetchall())
        return [json.loads(r["body"]) for r in rows]

    # -- Route state (control plane) -------------------------------------------------------------

    def get_route_state(self, route: str) -> tuple[int, dict[str, Any]] | None:
        row = self._run(lambda c: c.execute("SELECT revision, body FROM route_state WHERE route = ?",
                                            (route,)).fetchone())
        return (row["revision"], json.loads(row["body"])) if row else None

    def list_route_states(self) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._run(lambda c: c.execute("SELECT route, revision, body FROM route_state").fetchall())
        return {r["route"]: (r["revision"], json.loads(r["body"])) for r in rows}

    def put_route_state(self, route: str, body: dict[str, Any], expected_revision: int) -> bool:
        """Compare-and-set: writes only if the stored revision is still `expected_revision` (0: absent).
        Two writers (the CLI, the controller, another replica) cannot overwrite each other unseen."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))

        def put(c: sqlite3.Connection) -> bool:
            if expected_revision == 0:
                cur = c.execute("INSERT OR IGNORE INTO route_state VALUES (?, 1, ?, ?)", (route, text, time.time()))
            else:
                cur = c.execute(
                    "UPDATE route_state SET revision = revision + 1, body = ?, updated_at = ? "
                    "WHERE route = ? AND revision = ?",
                    (text, time.time(), route, expected_revision),
                )
            return cur.rowcount == 1

        return self._run(put)

    def count_traces(self) -> int:
        return self._run(lambda c: c.execute("SELECT COUNT(*) FROM traces").fetchone()[0])

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
            rows = self._run(lambda c, after=after: c.execute(sql, (after,)).fetchall())
            if not rows:
                return
            for r in rows:
                yield _trace_link(r, with_bodies)
            after = rows[-1]["seq"]

    def unchained_traces(self, limit: int = 10) -> tuple[int, list[str]]:
        where = "FROM traces WHERE trace_id NOT IN (SELECT trace_id FROM trace_chain)"

        def query(c: sqlite3.Connection) -> tuple[int, list[str]]:
            (count,) = c.execute(f"SELECT COUNT(*) {where}").fetchone()
            sample = c.execute(f"SELECT trace_id {where} ORDER BY ts LIMIT ?", (limit,)).fetchall()
            return count, [r[0] for r in sample]

        return self._run(query)

    # -- Retention ------------------------------------------------------------------------------

    def expire_traces(self, cutoffs: RetentionCutoffs, *, actor: str) -> AuditRecord | None:
        if not cutoffs.deletes_anything():
            return None
        rules = _retention_rules(cutoffs)

        def expire(c: sqlite3.Connection) -> AuditRecord | None:
            c.execute("BEGIN IMMEDIATE")
            try:
                run_seq, _ = _next_link(c, AUDIT_CHAIN, _LAST_AUDIT)  # the seq this run's record gets
                head = _stored_head(c, TRACE_CHAIN)
                deleted = 0
                for where, args in rules:
                    c.execute("UPDATE trace_chain SET expired_by = ? WHERE expired_by IS NULL AND trace_id IN "
                              f"(SELECT trace_id FROM traces WHERE {where})", [run_seq, *args])
                    deleted += c.execute(f"DELETE FROM traces WHERE {where}", args).rowcount
                if deleted == 0:
                    c.execute("ROLLBACK")
                    return None
                details = {**cutoffs.as_details(), "deleted": deleted, "max_seq": head.seq if head else 0,
                           **_prune_trace_chain(c, cutoffs)}
                record = _append_audit(c, actor, "trace.retention", TRACE_CHAIN, details)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return record

        return self._run(expire)

    # -- Feedback -------------------------------------------------------------------------------

    def insert_feedback(self, records: list[dict[str, Any]]) -> int:
        rows = [(*(r.get(f) for f in FEEDBACK_FIELDS), "pending") for r in records]

        def insert(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                before = c.total_changes
                c.executemany(
                    "INSERT OR IGNORE INTO feedback (feedback_id, request_id, ts, rating, score, comment, user_ref, "
                    "key_id, rater, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
                )
                inserted = c.total_changes - before
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return inserted

        return self._run(insert)

    def link_feedback(self) -> list[FeedbackRecord]:
        linkable = (
            "SELECT f.*, t.route AS trace_route, t.release AS trace_release, t.key_id AS trace_key "
            "FROM feedback f JOIN traces t ON t.trace_id = f.request_id WHERE f.status = 'pending'"
        )

        def link(c: sqlite3.Connection) -> list[FeedbackRecord]:
            # Runs after every load pass: the common case, nothing to link, takes no write lock.
            if c.execute(linkable + " LIMIT 1").fetchone() is None:
                return []
            # IMMEDIATE, and `status = 'pending'` in the UPDATE: each feedback is linked exactly once,
            # whichever loader gets there first, so whoever links it may count it.
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(linkable).fetchall()
                now, linked = time.time(), []
                for r in rows:
                    status = "linked" if r["key_id"] == r["trace_key"] else "key_mismatch"
                    cur = c.execute(
                        "UPDATE feedback SET status = ?, route = ?, release = ?, linked_at = ? "
                        "WHERE feedback_id = ? AND status = 'pending'",
                        (status, r["trace_route"], r["trace_release"], now, r["feedback_id"]),
                    )
                    if cur.rowcount:
                        linked.append(_feedback(r, status=status, route=r["trace_route"],
                                                release=r["trace_release"], linked_at=now))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return linked

        return self._run(link)

    def list_feedback(
        self, *, request_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[FeedbackRecord]:
        sql, args = "SELECT * FROM feedback WHERE 1 = 1", list[Any]()
        if request_id is not None:
            sql, args = sql + " AND request_id = ?", [*args, request_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        rows = self._run(lambda c: c.execute(sql + " ORDER BY ts DESC, feedback_id LIMIT ?", [*args, limit]).fetchall())
        return [_feedback(r) for r in rows]

    def feedback_summary(self, route: str, since: float | None = None) -> list[FeedbackSummary]:
        # A rating counts unless the same rater rated the same request later (a changed mind, a retry).
        sql = (
            "SELECT release, COUNT(*) AS n, SUM(score) AS total, "
            "SUM(CASE WHEN score < 0.5 THEN 1 ELSE 0 END) AS negative "
            "FROM feedback f WHERE status = 'linked' AND route = ? AND ts >= ? AND release IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM feedback g WHERE g.request_id = f.request_id AND g.rater = f.rater "
            "AND g.status = 'linked' AND (g.ts > f.ts OR (g.ts = f.ts AND g.feedback_id > f.feedback_id))) "
            "GROUP BY release"
        )
        rows = self._run(lambda c: c.execute(sql, (route, since if since is not None else 0.0)).fetchall())
        summaries = [FeedbackSummary(route, r["release"], r["n"], r["total"] / r["n"], r["negative"]) for r in rows]
        return sorted(summaries, key=lambda s: parse_release_id(s.release) or (s.release, 0))  # @2 before @10

    # -- Alert states ---------------------------------------------------------------------------

    def get_alert_state(self, alert: str) -> AlertStateRecord | None:
        row = self._run(lambda c: c.execute("SELECT * FROM alert_state WHERE alert = ?", (alert,)).fetchone())
        return _alert_state(row) if row else None

    def list_alert_states(self) -> list[AlertStateRecord]:
        rows = self._run(lambda c: c.execute("SELECT * FROM alert_state ORDER BY alert").fetchall())
        return [_alert_state(r) for r in rows]

    def put_alert_state(self, record: AlertStateRecord, expected_revision: int) -> bool:
        """Compare-and-set, like put_route_state: of two evaluators deciding the same transition, one writes."""
        fields = (record.state, record.fingerprint, record.firing_since, record.last_notified,
                  json.dumps(record.details, sort_keys=True, separators=(",", ":")), time.time())

        def put(c: sqlite3.Connection) -> bool:
            if expected_revision == 0:
                cur = c.execute("INSERT OR IGNORE INTO alert_state (alert, revision, state, fingerprint, firing_since, "
                                "last_notified, details, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
                                (record.alert, *fields))
            else:
                cur = c.execute("UPDATE alert_state SET revision = revision + 1, state = ?, fingerprint = ?, "
                                "firing_since = ?, last_notified = ?, details = ?, updated_at = ? "
                                "WHERE alert = ? AND revision = ?", (*fields, record.alert, expected_revision))
            return cur.rowcount == 1

        return self._run(put)

    # -- Incidents ------------------------------------------------------------------------------

    def open_incident(
        self, *, title: str, severity: str, route: str | None, opened_by: str, response_due_at: float,
        lookback_s: float, alert: str | None = None, summary: str | None = None,
    ) -> IncidentRecord:
        def open_(c: sqlite3.Connection) -> IncidentRecord:
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(
                    "INSERT INTO incidents (title, severity, status, route, opened_at, opened_by, response_due_at, "
                    "lookback_s, alert, summary) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?)",
                    (title, severity, route, time.time(), opened_by, response_due_at, lookback_s, alert, summary))
                record = _incident(c.execute("SELECT * FROM incidents WHERE incident_id = ?",
                                             (cur.lastrowid,)).fetchone())
                _append_audit(c, opened_by, "incident.open", record.ref, {
                    "title": title, "severity": severity, "route": route, "alert": alert,
                    "response_due_at": response_due_at})
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return record

        return self._run(open_)

    def get_incident(self, incident_id: int) -> IncidentRecord | None:
        row = self._run(lambda c: c.execute("SELECT * FROM incidents WHERE incident_id = ?",
                                            (incident_id,)).fetchone())
        return _incident(row) if row else None

    def list_incidents(self, status: str | None = None, limit: int = 100) -> list[IncidentRecord]:
        sql, args = "SELECT * FROM incidents", list[Any]()
        if status is not None:
            sql, args = sql + " WHERE status = ?", [status]
        rows = self._run(lambda c: c.execute(sql + " ORDER BY incident_id DESC LIMIT ?", [*args, limit]).fetchall())
        return [_incident(r) for r in rows]

    def update_incident(
        self, incident_id: int, changes: dict[str, Any], *, expected: dict[str, Any], actor: str, action: str,
        details: dict[str, Any],
    ) -> IncidentRecord | None:
        unknown = (set(changes) | set(expected)) - set(_INCIDENT_MUTABLE)
        if unknown:
            raise ValueError(f"incidents cannot be updated on {sorted(unknown)}")
        sets = ", ".join(f"{col} = ?" for col in changes)
        conditions = "".join(f" AND {col} IS NULL" if value is None else f" AND {col} = ?"
                             for col, value in expected.items())
        args = [*changes.values(), incident_id, *(v for v in expected.values() if v is not None)]

        def update(c: sqlite3.Connection) -> IncidentRecord | None:
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(f"UPDATE incidents SET {sets} WHERE incident_id = ?{conditions}", args)
                if cur.rowcount != 1:
                    c.execute("ROLLBACK")
                    return None
                record = _incident(c.execute("SELECT * FROM incidents WHERE incident_id = ?",
                                             (incident_id,)).fetchone())
                _append_audit(c, actor, action, record.ref, {"route": record.route, **details})
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return record

        return self._run(update)

    def close(self) -> None:
        self._drop_connection()


# Incident columns that change after opening; the rest are fixed when it opens.
_INCIDENT_MUTABLE = ("severity", "status", "summary", "acknowledged_at", "acknowledged_by", "mitigated_at",
                     "resolved_at", "resolved_by")


_LAST_AUDIT = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"


def _stored_head(c: sqlite3.Connection, chain: str) -> ChainHead | None:
    row = c.execute("SELECT seq, hash FROM chain_heads WHERE chain = ?", (chain,)).fetchone()
    return ChainHead(row["seq"], row["hash"]) if row else None


def _set_head(c: sqlite3.Connection, chain: str, seq: int, digest: str) -> None:
    c.execute("INSERT INTO chain_heads (chain, seq, hash) VALUES (?, ?, ?) "
              "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (chain, seq, digest))


def _next_link(c: sqlite3.Connection, chain: str, last_sql: str) -> tuple[int, str]:
    """The seq and previous hash for the chain's next link. The head wins over the table's last row
    when it is ahead (rows were cut from the tail: the next link then leaves a visible gap); the
    last row wins when it is ahead (rows written by something else; refusing to append would only
    stop the log, and verification reports those rows' hashes if they do not fit)."""
    head = _stored_head(c, chain)
    last = c.execute(last_sql).fetchone()
    if head is not None and (last is None or head.seq >= last["seq"]):
        return head.seq + 1, head.hash
    if last is not None:
        return last["seq"] + 1, last["hash"]
    return 1, GENESIS_HASH


def _append_audit(c: sqlite3.Connection, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditRecord:
    """Appends inside the caller's write transaction, so a change and its record commit together."""
    seq, prev = _next_link(c, AUDIT_CHAIN, _LAST_AUDIT)
    fields = {"seq": seq, "ts": time.time(), "actor": actor, "action": action, "target": target, "details": details}
    digest = chain_hash(prev, fields)
    c.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, fields["ts"], actor, action, target, canonical_json(details), prev, digest),
    )
    _set_head(c, AUDIT_CHAIN, seq, digest)
    return AuditRecord(seq, fields["ts"], actor, action, target, details, prev, digest)


def _known_trace_ids(c: sqlite3.Connection, trace_ids: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(trace_ids), 500):  # well under every SQLite build's limit on parameters
        chunk = trace_ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for table in ("trace_chain", "traces"):
            known.update(r[0] for r in c.execute(f"SELECT trace_id FROM {table} WHERE trace_id IN ({marks})", chunk))
    return known


def _retention_rules(cutoffs: RetentionCutoffs) -> list[tuple[str, list[Any]]]:
    """SQL conditions on the traces table, one per route with a cutoff and one for all other routes."""
    rules: list[tuple[str, list[Any]]] = [
        ("route = ? AND ts < ?", [route, cutoff]) for route, cutoff in cutoffs.by_route.items() if cutoff is not None
    ]
    if cutoffs.other_routes is not None:
        configured = list(cutoffs.by_route)
        if configured:
            marks = ",".join("?" * len(configured))
            rules.append((f"(route IS NULL OR route NOT IN ({marks})) AND ts < ?", [*configured, cutoffs.other_routes]))
        else:
            rules.append(("ts < ?", [cutoffs.other_routes]))
    return rules


def _prune_trace_chain(c: sqlite3.Connection, cutoffs: RetentionCutoffs) -> dict[str, Any]:
    """Drops the oldest links once every one of them is expired and older than today's cutoffs,
    and returns the anchor (the last dropped link's seq and hash) for the audit record.

    Only a prefix goes, so what remains is still one unbroken chain that starts at the anchor. A link
    whose trace vanished without a retention run (expired_by NULL) is never dropped: it stays as
    evidence, and holds back pruning behind it. What the pruned part could have shown is gone with it;
    that is what deleting data means."""
    cases, args = [], []
    for route, cutoff in cutoffs.by_route.items():
        cases.append("WHEN ? THEN ?")
        args += [route, cutoff]
    cutoff_sql = f"CASE route {' '.join(cases)} ELSE ? END" if cases else "?"
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


def _trace_link(r: sqlite3.Row, with_bodies: bool) -> TraceLink:
    body = columns = None
    if with_bodies and r["t_trace_id"] is not None:
        body = r["body"]
        columns = {"trace_id": r["t_trace_id"], **{col: r[f"t_{col}"] for col in TRACE_COLUMNS[1:]}}
    return TraceLink(r["seq"], r["trace_id"], r["ts"], r["route"], r["body_sha256"], r["prev_hash"], r["hash"],
                     r["expired_by"], body, columns)


def _release(row: sqlite3.Row) -> ReleaseRecord:
    return ReleaseRecord(
        route=row["route"],
        version=row["version"],
        label=row["label"],
        content_hash=row["content_hash"],
        content=json.loads(row["content"]),
        created_at=row["created_at"],
    )


def _evidence(row: sqlite3.Row) -> EvidenceRecord:
    return EvidenceRecord(
        evidence_id=row["evidence_id"],
        route=row["route"],
        version=row["version"],
        kind=row["kind"],
        passed=None if row["passed"] is None else bool(row["passed"]),
        summary=json.loads(row["summary"]),
        created_at=row["created_at"],
    )


def _alert_state(row: sqlite3.Row) -> AlertStateRecord:
    return AlertStateRecord(alert=row["alert"], state=row["state"], fingerprint=row["fingerprint"],
                            firing_since=row["firing_since"], last_notified=row["last_notified"],
                            details=json.loads(row["details"]), revision=row["revision"], updated_at=row["updated_at"])


def _incident(row: sqlite3.Row) -> IncidentRecord:
    return IncidentRecord(**{name: row[name] for name in row.keys()})


def _feedback(row: sqlite3.Row, **linked: Any) -> FeedbackRecord:
    fields = {
        "feedback_id": row["feedback_id"], "request_id": row["request_id"], "ts": row["ts"], "rating": row["rating"],
        "score": row["score"], "comment": row["comment"], "user": row["user_ref"], "key_id": row["key_id"],
        "rater": row["rater"], "status": row["status"], "route": row["route"], "release": row["release"],
        "linked_at": row["linked_at"],
    }
    return FeedbackRecord(**(fields | linked))

