"""How audit records are chained.

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


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()
