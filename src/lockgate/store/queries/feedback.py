"""Users' ratings of requests, linked to their traces once both are stored."""

from __future__ import annotations

import time
from typing import Any

from lockgate.releases import parse_release_id
from lockgate.store import records
from lockgate.store.base import FeedbackRecord, FeedbackSummary
from lockgate.store.engines import Connection
from lockgate.store.transactions import Transactions

# Journal record field -> feedback column, in table order up to `status`.
FEEDBACK_FIELDS = ("feedback_id", "request_id", "ts", "rating", "score", "comment", "user", "key_id", "rater")
_LINKABLE = (
    "SELECT f.*, t.route AS trace_route, t.release AS trace_release, t.key_id AS trace_key "
    "FROM feedback f JOIN traces t ON t.trace_id = f.request_id WHERE f.status = 'pending'"
)


class FeedbackQueries(Transactions):
    def insert_feedback(self, records_: list[dict[str, Any]]) -> int:
        """Idempotent on feedback id: a replayed journal segment inserts nothing twice."""
        rows = [(*(r.get(f) for f in FEEDBACK_FIELDS), "pending") for r in records_]
        if not rows:
            return 0
        return int(self._write(lambda c: c.executemany(
            "INSERT INTO feedback (feedback_id, request_id, ts, rating, score, comment, user_ref, key_id, rater, "
            "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feedback_id) DO NOTHING", rows,
        ).rowcount))

    def link_feedback(self) -> list[FeedbackRecord]:
        # Runs after every load pass: the common case, nothing to link, takes no write lock.
        if self._read(lambda c: c.execute(_LINKABLE + " LIMIT 1").fetchone()) is None:
            return []

        def link(c: Connection) -> list[FeedbackRecord]:
            # Under the feedback lock, and `status = 'pending'` in the UPDATE: each feedback is linked
            # exactly once, whichever loader (on whichever replica) gets there first, so whoever links
            # it may count it.
            now, linked = time.time(), []
            for r in c.execute(_LINKABLE).fetchall():
                status = "linked" if r["key_id"] == r["trace_key"] else "key_mismatch"
                cur = c.execute(
                    "UPDATE feedback SET status = ?, route = ?, release = ?, linked_at = ? "
                    "WHERE feedback_id = ? AND status = 'pending'",
                    (status, r["trace_route"], r["trace_release"], now, r["feedback_id"]),
                )
                if cur.rowcount:
                    linked.append(records.feedback(r, status=status, route=r["trace_route"],
                                                   release=r["trace_release"], linked_at=now))
            return linked

        return self._write(link, "feedback")

    def list_feedback(
        self, *, request_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[FeedbackRecord]:
        sql, args = "SELECT * FROM feedback WHERE 1 = 1", list[Any]()
        if request_id is not None:
            sql, args = sql + " AND request_id = ?", [*args, request_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        rows = self._read(lambda c: c.execute(sql + " ORDER BY ts DESC, feedback_id LIMIT ?",
                                              [*args, limit]).fetchall())
        return [records.feedback(r) for r in rows]

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
        rows = self._read(lambda c: c.execute(sql, (route, since if since is not None else 0.0)).fetchall())
        summaries = [FeedbackSummary(route, r["release"], r["n"], r["total"] / r["n"], r["negative"]) for r in rows]
        return sorted(summaries, key=lambda s: parse_release_id(s.release) or (s.release, 0))  # @2 before @10
