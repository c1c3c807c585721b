"""Who performed an operation, as the audit log records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    """`name` is the audit record's actor; `key_id` and `via` go into its details, because key names
    need not be unique and an auditor must be able to tell two keys called `ci` apart."""

    name: str
    via: str  # "admin-api" or "cli"
    key_id: str | None = None

    @classmethod
    def cli(cls, name: str | None = None) -> Actor:
        """A person at a terminal: `--actor NAME` when given, else the operating-system user."""
        from lockgate.audit.actions import default_actor

        return cls(name=name or default_actor(), via="cli")

    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"via": self.via}
        if self.key_id is not None:
            details["key_id"] = self.key_id
        return details
