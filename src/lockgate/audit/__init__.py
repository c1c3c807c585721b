"""The tamper-evident audit log: every admin action, hash-chained."""

from lockgate.audit.chain import GENESIS_HASH, AuditRecord, chain_hash

__all__ = ["GENESIS_HASH", "AuditRecord", "chain_hash"]
