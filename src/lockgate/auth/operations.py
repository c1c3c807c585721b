"""Key management as operations: the one implementation behind `lockgate keys` and /admin/v1/keys.

Each operation validates its input (raising `InvalidRequest` / `NotFound` with a message that says
how to fix it), does the change through the store, and appends an audit record naming the actor.
Store errors (`StoreUnavailable`) pass through for the caller to report.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from lockgate.auth.actor import Actor
from lockgate.auth.keys import NewKey, create_key
from lockgate.auth.roles import Role, parse_role
from lockgate.config.schema import NAME_PATTERN
from lockgate.errors import InvalidRequest, NotFound
from lockgate.store import ApiKeyRecord, Store

MAX_KEY_NAME = 100


def create_api_key(
    store: Store,
    actor: Actor,
    *,
    name: str,
    role: str = Role.APP.value,
    routes: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> NewKey:
    parsed_role = _role(role)
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME or not name.isprintable():
        raise InvalidRequest(
            f"A key name must be 1 to {MAX_KEY_NAME} printable characters (who or what the key is for, "
            "e.g. `support-app`).", param="name"
        )
    if parsed_role.is_governance and (routes or requests_per_minute or tokens_per_minute):
        raise InvalidRequest(
            f"Routes and rate limits apply to app keys only; a '{parsed_role}' key works on the admin API. "
            "Drop them, or create an app key for the data plane.", param="routes"
        )
    for route in routes or []:
        if not re.match(NAME_PATTERN, route):
            raise InvalidRequest(
                f"'{route}' is not a route name: names are lowercase letters, digits, '.', '_' or '-'.",
                param="routes",
            )
    for param, limit in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
        if limit is not None and limit < 1:
            raise InvalidRequest(f"{param} must be at least 1 (leave it out for the server's default).", param=param)
    # create_key records the creation in the audit log (once, with what the key may do).
    return create_key(store, name, routes=routes or None, requests_per_minute=requests_per_minute,
                      tokens_per_minute=tokens_per_minute, role=parsed_role, actor=actor.name,
                      via=actor.via)


def revoke_api_keys(store: Store, actor: Actor, key_id_or_name: str) -> list[ApiKeyRecord]:
    """Revokes the active key with this id, or every active key with this name; returns what it revoked."""
    matches = [k for k in store.list_keys() if key_id_or_name in (k.key_id, k.name)]
    if not matches:
        raise NotFound(
            f"No active key with id or name '{key_id_or_name}'. List keys with `lockgate keys list` "
            "or GET /admin/v1/keys."
        )
    at = time.time()
    store.revoke_key(key_id_or_name, at)
    for key in matches:
        store.append_audit(actor.name, "key.revoke", key.key_id,
                           {**actor.audit_details(), "name": key.name, "role": key.role})
    return [replace(k, revoked_at=at) for k in matches]


def _role(text: str) -> Role:
    try:
        return parse_role(text)
    except ValueError as exc:
        raise InvalidRequest(f"{exc}.", param="role") from None
