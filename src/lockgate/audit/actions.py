"""The admin actions Lockgate itself records in the audit log: keys, releases, configuration.

Other capabilities (rollouts, flags) call `store.append_audit` directly with their own action
names; what is here are the records that need a decision about *when* to write them (a release only
when it is new, a configuration only when its content changed).
"""

from __future__ import annotations

import getpass
import hashlib
import os

from lockgate.audit.chain import AuditRecord, canonical_json
from lockgate.config import LockgateConfig
from lockgate.store import ApiKeyRecord, ReleaseRecord, Store

CONFIG_LOAD = "config.load"


def default_actor() -> str:
    """Who is acting when nobody said: the operating-system user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (some containers)
        return f"uid:{os.getuid()}"


def record_key_created(store: Store, key: ApiKeyRecord, actor: str, via: str = "cli") -> AuditRecord:
    # Never the key nor its hash: the audit log is read by more people than the key table.
    return store.append_audit(actor, "key.create", key.key_id, {"via": via,
        "name": key.name, "role": key.role, "routes": list(key.routes) if key.routes is not None else None,
        "requests_per_minute": key.requests_per_minute, "tokens_per_minute": key.tokens_per_minute,
    })


def record_key_revoked(store: Store, key: ApiKeyRecord, actor: str) -> AuditRecord:
    return store.append_audit(actor, "key.revoke", key.key_id, {"name": key.name})


def record_release_created(store: Store, record: ReleaseRecord, actor: str) -> AuditRecord:
    return store.append_audit(actor, "release.create", record.release_id,
                              {"label": record.label, "content_hash": record.content_hash})


def config_hash(config: LockgateConfig) -> str:
    """The hash of what the configuration means, not of its text: reformatting or a comment is not a
    change an auditor needs to read about; any changed value is."""
    return hashlib.sha256(canonical_json(config.model_dump(mode="json")).encode("utf-8")).hexdigest()


def record_config_loaded(store: Store, config: LockgateConfig, source: str, actor: str) -> AuditRecord | None:
    """Records the configuration a gateway starts with, once per distinct content."""
    digest = config_hash(config)
    previous = store.list_audit(action=CONFIG_LOAD)
    if previous and previous[-1].details.get("content_hash") == digest:
        return None
    return store.append_audit(actor, CONFIG_LOAD, source, {
        "content_hash": digest,
        "previous_hash": previous[-1].details.get("content_hash") if previous else None,
        "serving": {name: route.serve for name, route in config.routes.items()},
    })
