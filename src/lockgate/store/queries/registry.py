"""API keys, the release registry and the evidence releases were judged on."""

from __future__ import annotations

import json
import time
from typing import Any

from lockgate.store import records
from lockgate.store.base import ApiKeyRecord, EvidenceRecord, ReleaseRecord
from lockgate.store.engines import Connection
from lockgate.store.transactions import Transactions


class RegistryQueries(Transactions):
    # -- API keys -------------------------------------------------------------------------------

    def add_key(self, record: ApiKeyRecord) -> None:
        routes = json.dumps(list(record.routes)) if record.routes is not None else None
        args = (record.key_id, record.name, record.key_hash, routes, record.requests_per_minute,
                record.tokens_per_minute, record.created_at, record.revoked_at, record.role)
        self._read(lambda c: c.execute(
            "INSERT INTO api_keys (key_id, name, key_hash, routes, requests_per_minute, tokens_per_minute, "
            "created_at, revoked_at, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", args))

    def list_keys(self, include_revoked: bool = False) -> list[ApiKeyRecord]:
        sql = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        rows = self._read(lambda c: c.execute(sql + " ORDER BY created_at").fetchall())
        return [records.api_key(r) for r in rows]

    def revoke_key(self, key_id_or_name: str, at: float) -> bool:
        cur = self._read(lambda c: c.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL",
            (at, key_id_or_name, key_id_or_name)))
        return bool(cur.rowcount)

    # -- Releases -------------------------------------------------------------------------------

    def register_release(self, route: str, label: str, content_hash: str, content: dict[str, Any]) -> ReleaseRecord:
        select = "SELECT * FROM releases WHERE route = ? AND content_hash = ?"

        def register(c: Connection) -> ReleaseRecord:
            # Under the releases lock, so two processes cannot hand out the same version.
            row = c.execute(select, (route, content_hash)).fetchone()
            if row is None:
                (latest,) = c.execute("SELECT COALESCE(MAX(version), 0) FROM releases WHERE route = ?",
                                      (route,)).fetchone()
                c.execute("INSERT INTO releases (route, version, label, content_hash, content, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (route, latest + 1, label, content_hash, json.dumps(content, sort_keys=True), time.time()))
                row = c.execute(select, (route, content_hash)).fetchone()
            return records.release(row)

        return self._write(register, "releases")

    def list_releases(self, route: str | None = None) -> list[ReleaseRecord]:
        if route is None:
            rows = self._read(lambda c: c.execute("SELECT * FROM releases ORDER BY route, version").fetchall())
        else:
            rows = self._read(lambda c: c.execute("SELECT * FROM releases WHERE route = ? ORDER BY version",
                                                  (route,)).fetchall())
        return [records.release(r) for r in rows]

    def get_release(self, route: str, version: int) -> ReleaseRecord | None:
        row = self._read(lambda c: c.execute("SELECT * FROM releases WHERE route = ? AND version = ?",
                                             (route, version)).fetchone())
        return records.release(row) if row else None

    # -- Evidence --------------------------------------------------------------------------------

    def add_evidence(
        self, route: str, version: int, kind: str, passed: bool | None, summary: dict[str, Any]
    ) -> EvidenceRecord:
        now = time.time()
        body = json.dumps(summary, sort_keys=True, separators=(",", ":"))
        rows = self._read(lambda c: c.execute(
            "INSERT INTO evidence (route, version, kind, passed, summary, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING evidence_id", (route, version, kind, None if passed is None else int(passed), body, now),
        ).fetchall())
        return EvidenceRecord(rows[0][0], route, version, kind, passed, summary, now)

    def list_evidence(self, route: str, version: int | None = None, kind: str | None = None) -> list[EvidenceRecord]:
        sql, args = "SELECT * FROM evidence WHERE route = ?", list[Any]([route])
        if version is not None:
            sql, args = sql + " AND version = ?", [*args, version]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        rows = self._read(lambda c: c.execute(sql + " ORDER BY evidence_id", args).fetchall())
        return [records.evidence(r) for r in rows]
