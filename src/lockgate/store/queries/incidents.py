"""Incidents: each change commits together with its audit record."""

from __future__ import annotations

import time
from typing import Any

from lockgate.store import records
from lockgate.store.base import IncidentRecord
from lockgate.store.engines import Connection
from lockgate.store.queries.chains import append_audit
from lockgate.store.transactions import Transactions

# Incident columns that change after opening; the rest are fixed when it opens.
_INCIDENT_MUTABLE = ("severity", "status", "summary", "acknowledged_at", "acknowledged_by", "mitigated_at",
                     "resolved_at", "resolved_by")
_SELECT = "SELECT * FROM incidents WHERE incident_id = ?"


class IncidentQueries(Transactions):
    def open_incident(
        self, *, title: str, severity: str, route: str | None, opened_by: str, response_due_at: float,
        lookback_s: float, alert: str | None = None, summary: str | None = None,
    ) -> IncidentRecord:
        def open_(c: Connection) -> IncidentRecord:
            (incident_id,) = c.execute(
                "INSERT INTO incidents (title, severity, status, route, opened_at, opened_by, response_due_at, "
                "lookback_s, alert, summary) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?) RETURNING incident_id",
                (title, severity, route, time.time(), opened_by, response_due_at, lookback_s, alert, summary),
            ).fetchall()[0]
            record = records.incident(c.execute(_SELECT, (incident_id,)).fetchone())
            append_audit(c, opened_by, "incident.open", record.ref, {
                "title": title, "severity": severity, "route": route, "alert": alert,
                "response_due_at": response_due_at})
            return record

        return self._write(open_, "audit")

    def get_incident(self, incident_id: int) -> IncidentRecord | None:
        row = self._read(lambda c: c.execute(_SELECT, (incident_id,)).fetchone())
        return records.incident(row) if row else None

    def list_incidents(self, status: str | None = None, limit: int = 100) -> list[IncidentRecord]:
        sql, args = "SELECT * FROM incidents", list[Any]()
        if status is not None:
            sql, args = sql + " WHERE status = ?", [status]
        rows = self._read(lambda c: c.execute(sql + " ORDER BY incident_id DESC LIMIT ?", [*args, limit]).fetchall())
        return [records.incident(r) for r in rows]

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

        def update(c: Connection) -> IncidentRecord | None:
            if c.execute(f"UPDATE incidents SET {sets} WHERE incident_id = ?{conditions}", args).rowcount != 1:
                return None  # nothing was written: someone else changed it first
            record = records.incident(c.execute(_SELECT, (incident_id,)).fetchone())
            append_audit(c, actor, action, record.ref, {"route": record.route, **details})
            return record

        return self._write(update, "audit")
