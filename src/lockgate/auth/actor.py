"""Who performed an operation, as the audit log records it."""

from __future__ import annotations

import getpass
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
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers) and no USER variable
            user = "unknown"
        return cls(name=f"cli:{user}", via="cli")

    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"via": self.via}
        if self.key_id is not None:
            details["key_id"] = self.key_id
        return details
