"""The tamper-evident audit log: every admin action and every trace, hash-chained."""

from lockgate.audit.chain import GENESIS_HASH, AuditRecord, canonical_json, chain_hash

__all__ = ["GENESIS_HASH", "AuditRecord", "canonical_json", "chain_hash"]
