"""How records are chained: the audit log, and the trace chain.

Each record's hash covers its own fields and the previous record's hash, so changing, removing or
reordering any record breaks every hash after it. The fields are hashed as canonical JSON, so the
chain can be verified by any tool that reads the table, in any language.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: float
    actor: str
    action: str  # e.g. "release.create", "rollout.rollback", "flag.set", "key.create"
    target: str  # what it acted on, e.g. "support-bot" or "support-bot@2"
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def hashed_fields(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor, "action": self.action,
                "target": self.target, "details": self.details}


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is: one text for one value, whoever serialises it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode("utf-8")).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the trace chain ------------------------------------------------------------------------------
# Traces are chained in the order they are stored. A link covers the trace's identity, time and
# route (what retention decides on) and the SHA-256 of its stored JSON body, so the body itself can
# later be deleted by retention while the chain still verifies.

TRACE_CHAIN = "traces"
AUDIT_CHAIN = "audit"


def trace_link_fields(seq: int, trace_id: str, ts: float, route: str | None, body_sha256: str) -> dict[str, Any]:
    return {"seq": seq, "trace_id": trace_id, "ts": ts, "route": route, "body_sha256": body_sha256}
