"""API key creation and the in-memory key ring the request path checks against.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them safely (slow password
hashes exist for guessable secrets). The ring holds every live key's hash in memory and refreshes
from the store in the background: a database outage never turns valid keys into 401s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from lockgate.audit.actions import default_actor, record_key_created, record_key_revoked
from lockgate.auth.roles import Role
from lockgate.store import ApiKeyRecord, Store, StoreUnavailable

log = logging.getLogger(__name__)

KEY_PREFIX = "lg-"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewKey:
    record: ApiKeyRecord
    plaintext: str


def create_key(
    store: Store,
    name: str,
    *,
    routes: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    actor: str | None = None,
    role: Role = Role.APP,
    via: str = "cli",
) -> NewKey:
    """Creates and stores a key, and records it in the audit log (by `actor`, default the OS user).
    The plaintext is returned once and exists nowhere else from here on."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        key_id="key_" + secrets.token_hex(6),
        name=name,
        key_hash=hash_key(plaintext),
        routes=tuple(routes) if routes else None,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        created_at=time.time(),
        role=role.value,
    )
    store.add_key(record)
    record_key_created(store, record, actor or default_actor(), via)
    return NewKey(record=record, plaintext=plaintext)


def revoke_key(store: Store, key_id_or_name: str, *, actor: str | None = None) -> bool:
    """Revokes the active key(s) with this id or name; each revocation is recorded in the audit log."""
    matching = [k for k in store.list_keys() if key_id_or_name in (k.key_id, k.name)]
    if not store.revoke_key(key_id_or_name, time.time()):
        return False
    for key in matching:
        record_key_revoked(store, key, actor or default_actor())
    return True


class KeyRing:
    """The live keys, by hash. `lookup` never touches the database."""

    def __init__(self, store: Store, *, refresh_interval_s: float = 2.0) -> None:
        self._store = store
        self._refresh_interval_s = refresh_interval_s
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self.last_refresh: float | None = None

    def lookup(self, plaintext: str) -> ApiKeyRecord | None:
        return self._by_hash.get(hash_key(plaintext))

    def refresh(self) -> None:
        keys = self._store.list_keys()
        self._by_hash = {k.key_hash: k for k in keys}
        self.last_refresh = time.time()

    async def run_refresher(self) -> None:
        """Refreshes forever; on store errors keeps the last known keys and tries again."""
        while True:
            await asyncio.sleep(self._refresh_interval_s)
            try:
                await asyncio.to_thread(self.refresh)
            except StoreUnavailable as exc:
                log.warning("key refresh failed, keeping %d known keys: %s", len(self._by_hash), exc)
