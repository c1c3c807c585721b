"""SQLite store: the embedded default, one file in the data folder.

WAL mode lets gateway workers, the CLI and the trace ingester read and write the same file at once.
Each thread gets its own connection, because sqlite3 connections must not cross threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from lockgate.audit.chain import GENESIS_HASH, AuditRecord, chain_hash
from lockgate.store.base import ApiKeyRecord, EvidenceRecord, ReleaseRecord, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    routes TEXT,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER,
    created_at REAL NOT NULL,
    revoked_at REAL
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
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_ts ON traces (ts);
CREATE INDEX IF NOT EXISTS traces_route_ts ON traces (route, ts);
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
"""

TRACE_COLUMNS = ("trace_id", "ts", "route", "release", "key_id", "status", "outcome", "latency_ms")


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
        self._run(lambda c: c.executescript(SCHEMA))

    # -- API keys -------------------------------------------------------------------------------

    def add_key(self, record: ApiKeyRecord) -> None:
        routes = json.dumps(list(record.routes)) if record.routes is not None else None
        self._run(
            lambda c: c.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key_id,
                    record.name,
                    record.key_hash,
                    routes,
                    record.requests_per_minute,
                    record.tokens_per_minute,
                    record.created_at,
                    record.revoked_at,
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
                last = c.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS_HASH)
                fields = {"seq": seq, "ts": time.time(), "actor": actor, "action": action, "target": target,
                          "details": details}
                digest = chain_hash(prev, fields)
                c.execute(
                    "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, fields["ts"], actor, action, target,
                     json.dumps(details, sort_keys=True, separators=(",", ":")), prev, digest),
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return AuditRecord(seq, fields["ts"], actor, action, target, details, prev, digest)

        return self._run(append)

    def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        sql = "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self._run(lambda c: c.execute(sql, (since_seq,)).fetchall())
        return [
            AuditRecord(r["seq"], r["ts"], r["actor"], r["action"], r["target"], json.loads(r["details"]),
                        r["prev_hash"], r["hash"])
            for r in rows
        ]

    # -- Traces ---------------------------------------------------------------------------------

    def insert_traces(self, traces: list[dict[str, Any]]) -> int:
        rows = [(*(t.get(col) for col in TRACE_COLUMNS), json.dumps(t, separators=(",", ":"))) for t in traces]

        def insert(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                before = c.total_changes
                c.executemany("INSERT OR IGNORE INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                inserted = c.total_changes - before
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return inserted

        return self._run(insert)

    def recent_traces(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]:
        if route is None:
            sql, args = "SELECT body FROM traces ORDER BY ts DESC LIMIT ?", (limit,)
        else:
            sql, args = "SELECT body FROM traces WHERE route = ? ORDER BY ts DESC LIMIT ?", (route, limit)
        rows = self._run(lambda c: c.execute(sql, args).fetchall())
        return [json.loads(r["body"]) for r in rows]

    def traces_between(self, route: str, since: float, until: float, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT body FROM traces WHERE route = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?"
        rows = self._run(lambda c: c.execute(sql, (route, since, until, int(limit))).fetchall())
        return [json.loads(r["body"]) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        row = self._run(lambda c: c.execute("SELECT body FROM traces WHERE trace_id = ?", (trace_id,)).fetchone())
        return json.loads(row["body"]) if row else None

    def count_traces(self) -> int:
        return self._run(lambda c: c.execute("SELECT COUNT(*) FROM traces").fetchone()[0])

    def close(self) -> None:
        self._drop_connection()


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
