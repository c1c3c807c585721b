"""Shared state that several writers change: what serves each route, and each alert rule's state.

Both are compare-and-set on a revision: an insert that does nothing when the row exists (expected
revision 0), or an update that matches only the expected revision. On SQLite the file's write lock
orders them; on PostgreSQL the row lock does, and a writer that waited re-reads the row before its
WHERE decides (READ COMMITTED), so of two writers expecting the same revision exactly one wins, on
any replica.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lockgate.store import records
from lockgate.store.base import AlertStateRecord
from lockgate.store.transactions import Transactions


class StateQueries(Transactions):
    # -- Route state (control plane) -------------------------------------------------------------

    def get_route_state(self, route: str) -> tuple[int, dict[str, Any]] | None:
        row = self._read(lambda c: c.execute("SELECT revision, body FROM route_state WHERE route = ?",
                                             (route,)).fetchone())
        return (row["revision"], json.loads(row["body"])) if row else None

    def list_route_states(self) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._read(lambda c: c.execute("SELECT route, revision, body FROM route_state").fetchall())
        return {r["route"]: (r["revision"], json.loads(r["body"])) for r in rows}

    def put_route_state(self, route: str, body: dict[str, Any], expected_revision: int) -> bool:
        """Compare-and-set: writes only if the stored revision is still `expected_revision` (0: absent).
        Two writers (the CLI, the controller, another replica) cannot overwrite each other unseen."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        args: tuple[Any, ...]
        if expected_revision == 0:
            sql, args = ("INSERT INTO route_state (route, revision, body, updated_at) VALUES (?, 1, ?, ?) "
                         "ON CONFLICT (route) DO NOTHING", (route, text, time.time()))
        else:
            sql, args = ("UPDATE route_state SET revision = revision + 1, body = ?, updated_at = ? "
                         "WHERE route = ? AND revision = ?", (text, time.time(), route, expected_revision))
        return bool(self._read(lambda c: c.execute(sql, args).rowcount == 1))

    # -- Alert states ---------------------------------------------------------------------------

    def get_alert_state(self, alert: str) -> AlertStateRecord | None:
        row = self._read(lambda c: c.execute("SELECT * FROM alert_state WHERE alert = ?", (alert,)).fetchone())
        return records.alert_state(row) if row else None

    def list_alert_states(self) -> list[AlertStateRecord]:
        rows = self._read(lambda c: c.execute("SELECT * FROM alert_state ORDER BY alert").fetchall())
        return [records.alert_state(r) for r in rows]

    def put_alert_state(self, record: AlertStateRecord, expected_revision: int) -> bool:
        """Compare-and-set, like put_route_state: of two evaluators deciding the same transition, one writes."""
        fields = (record.state, record.fingerprint, record.firing_since, record.last_notified,
                  json.dumps(record.details, sort_keys=True, separators=(",", ":")), time.time())
        args: tuple[Any, ...]
        if expected_revision == 0:
            sql, args = ("INSERT INTO alert_state (alert, revision, state, fingerprint, firing_since, last_notified, "
                         "details, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert) DO NOTHING",
                         (record.alert, *fields))
        else:
            sql, args = ("UPDATE alert_state SET revision = revision + 1, state = ?, fingerprint = ?, "
                         "firing_since = ?, last_notified = ?, details = ?, updated_at = ? "
                         "WHERE alert = ? AND revision = ?", (*fields, record.alert, expected_revision))
        return bool(self._read(lambda c: c.execute(sql, args).rowcount == 1))
