"""The schema as it stood when migrations began; adopts data folders made before them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Epoch seconds need double precision (PostgreSQL's REAL is 4 bytes); SQLite keeps the REAL it always had.
REAL: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
# Chain sequence numbers: 64-bit on PostgreSQL; on SQLite exactly INTEGER, so the column stays the rowid.
SEQ: sa.types.TypeEngine[int] = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FLAG: dict[str, Any] = {"nullable": False, "server_default": "0"}


def _tables(metadata: sa.MetaData) -> list[sa.Table]:
    def text(name: str, **kw: Any) -> sa.Column:
        return sa.Column(name, sa.Text, **kw)

    return [
        sa.Table(
            "api_keys", metadata,
            text("key_id", primary_key=True), text("name", nullable=False),
            text("key_hash", nullable=False, unique=True),
            text("routes"), sa.Column("requests_per_minute", sa.Integer), sa.Column("tokens_per_minute", sa.Integer),
            sa.Column("created_at", REAL, nullable=False), sa.Column("revoked_at", REAL),
            text("role", nullable=False, server_default="app"),
        ),
        sa.Table(
            "releases", metadata,
            text("route", primary_key=True), sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            text("label", nullable=False), text("content_hash", nullable=False), text("content", nullable=False),
            sa.Column("created_at", REAL, nullable=False),
            sa.UniqueConstraint("route", "content_hash"),
        ),
        sa.Table(
            "traces", metadata,
            text("trace_id", primary_key=True), sa.Column("ts", REAL, nullable=False), text("route"), text("release"),
            text("key_id"), sa.Column("status", sa.Integer, nullable=False), text("outcome", nullable=False),
            sa.Column("latency_ms", REAL), text("body", nullable=False), text("shadow_of"),
            sa.Column("release_failed", sa.Integer, **FLAG), sa.Column("guard_violation", sa.Integer, **FLAG),
            sa.Column("grounding_failed", sa.Integer, **FLAG), sa.Column("prompt_tokens", sa.Integer, **FLAG),
            sa.Column("completion_tokens", sa.Integer, **FLAG),
            sa.Index("traces_ts", "ts"), sa.Index("traces_route_ts", "route", "ts"),
        ),
        sa.Table(
            "route_state", metadata,
            text("route", primary_key=True), sa.Column("revision", sa.Integer, nullable=False),
            text("body", nullable=False), sa.Column("updated_at", REAL, nullable=False),
        ),
        sa.Table(
            "evidence", metadata,
            sa.Column("evidence_id", sa.Integer, primary_key=True, autoincrement=True), text("route", nullable=False),
            sa.Column("version", sa.Integer, nullable=False), text("kind", nullable=False),
            sa.Column("passed", sa.Integer), text("summary", nullable=False),
            sa.Column("created_at", REAL, nullable=False),
            sa.Index("evidence_release", "route", "version", "kind"),
            sqlite_autoincrement=True,
        ),
        sa.Table(
            "audit_log", metadata,
            sa.Column("seq", SEQ, primary_key=True, autoincrement=False), sa.Column("ts", REAL, nullable=False),
            text("actor", nullable=False), text("action", nullable=False), text("target", nullable=False),
            text("details", nullable=False), text("prev_hash", nullable=False), text("hash", nullable=False),
        ),
        # The last link each chain's writer wrote ('audit', 'traces'), updated in the same transaction as
        # the link: a log whose tail was cut no longer ends where its head says (lockgate.audit.verify).
        sa.Table(
            "chain_heads", metadata,
            text("chain", primary_key=True), sa.Column("seq", SEQ, nullable=False), text("hash", nullable=False),
        ),
        # One link per stored trace, in the order traces were stored (lockgate.audit.chain). Kept when
        # retention deletes the trace itself (expired_by names that run's audit record), and pruned only
        # from the oldest end, behind an anchor recorded in the audit log.
        sa.Table(
            "trace_chain", metadata,
            sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
            text("trace_id", nullable=False, unique=True), sa.Column("ts", REAL, nullable=False), text("route"),
            text("body_sha256", nullable=False), text("prev_hash", nullable=False), text("hash", nullable=False),
            sa.Column("expired_by", SEQ),
        ),
        sa.Table(
            "feedback", metadata,
            text("feedback_id", primary_key=True), text("request_id", nullable=False),
            sa.Column("ts", REAL, nullable=False), text("rating", nullable=False),
            sa.Column("score", REAL, nullable=False), text("comment"), text("user_ref"), text("key_id"),
            text("rater", nullable=False), text("status", nullable=False), text("route"), text("release"),
            sa.Column("linked_at", REAL),
            sa.Index("feedback_request", "request_id", "rater"), sa.Index("feedback_status", "status"),
            sa.Index("feedback_route_ts", "route", "ts"),
        ),
        # One row per alert rule, shared by every evaluator (lockgate.alerts): compare-and-set on revision.
        sa.Table(
            "alert_state", metadata,
            text("alert", primary_key=True), sa.Column("revision", sa.Integer, nullable=False),
            text("state", nullable=False), text("fingerprint", nullable=False), sa.Column("firing_since", REAL),
            sa.Column("last_notified", REAL), text("details", nullable=False),
            sa.Column("updated_at", REAL, nullable=False),
        ),
        sa.Table(
            "incidents", metadata,
            sa.Column("incident_id", sa.Integer, primary_key=True, autoincrement=True),
            text("title", nullable=False), text("severity", nullable=False), text("status", nullable=False),
            text("route"), sa.Column("opened_at", REAL, nullable=False), text("opened_by", nullable=False),
            sa.Column("response_due_at", REAL, nullable=False), sa.Column("lookback_s", REAL, nullable=False),
            text("alert"), text("summary"), sa.Column("acknowledged_at", REAL), text("acknowledged_by"),
            sa.Column("mitigated_at", REAL), sa.Column("resolved_at", REAL), text("resolved_by"),
            sa.Index("incidents_status", "status"),
            sqlite_autoincrement=True,
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _tables(sa.MetaData()):
        if table.name not in existing:
            table.create(bind)
            continue
        # A table made before migrations: add what later versions of that code added in place
        # (its columns had defaults, so old rows read as they always did), and any missing index.
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                op.add_column(table.name, column._copy())
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def downgrade() -> None:
    for table in reversed(_tables(sa.MetaData())):
        op.drop_table(table.name)
