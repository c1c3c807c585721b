"""What every admin endpoint depends on: the caller (authenticated, with a role high enough) and the
store, reached off the event loop.

Authentication reads the gateway's in-memory key ring, so it works while the database is down.
Store calls run in a small pool of their own: a locked or slow database can hold at most those
threads and answers 503 after a bounded wait; it never blocks the event loop that serves /v1/.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lockgate.auth.actor import Actor
from lockgate.auth.roles import GOVERNANCE_ORDER, Role
from lockgate.config import LockgateConfig
from lockgate.errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from lockgate.gateway.runtime import Runtime
from lockgate.store import ApiKeyRecord, Store, StoreUnavailable

T = TypeVar("T")

STORE_THREADS = 4
# Longer than SQLite's busy timeout (5 s), so a locked database reports itself rather than timing out here.
STORE_TIMEOUT_S = 10.0


class AdminContext:
    """The gateway's runtime as the admin API sees it, plus the pool that runs store calls."""

    def __init__(self, runtime: Runtime, *, store_threads: int = STORE_THREADS,
                 store_timeout_s: float = STORE_TIMEOUT_S) -> None:
        self.runtime = runtime
        self.store_timeout_s = store_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=store_threads, thread_name_prefix="admin-store")

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def config(self) -> LockgateConfig:
        return self.runtime.config

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Runs `fn` (a store method or an operation that uses the store) in the pool; a database that
        is unavailable or too slow becomes a 503 that says so."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.wait_for(future, self.store_timeout_s)
        except StoreUnavailable as exc:
            raise ServiceUnavailable(
                f"The database is unavailable right now ({exc}), so this admin call could not complete. "
                "Retry in a few seconds; serving traffic is not affected."
            ) from None
        except TimeoutError:
            raise ServiceUnavailable(
                f"The database did not answer within {self.store_timeout_s:g} s, so this admin call could not "
                "complete. Retry in a few seconds; serving traffic is not affected."
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def admin_context(request: Request) -> AdminContext:
    return request.app.state.admin


Context = Annotated[AdminContext, Depends(admin_context)]


@dataclass(frozen=True)
class Caller:
    key: ApiKeyRecord
    role: Role

    @property
    def actor(self) -> Actor:
        return Actor(name=self.key.name, via="admin-api", key_id=self.key.key_id)


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key with a governance role (viewer, reviewer, operator, deployer or admin); "
                "create one with `lockgate keys create --name NAME --role viewer`.",
)
_LADDER = " < ".join(r.value for r in GOVERNANCE_ORDER)


class RoleRequirement:
    """A dependency that admits keys of `role` or higher. `role` is read by the OpenAPI builder too,
    so each operation documents the role it needs (see lockgate.admin.app)."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(
        self, request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        if credentials is None or not credentials.credentials.strip():
            raise AuthenticationFailed(
                "No API key provided. The admin API needs `Authorization: Bearer <key>` with a key of role "
                f"'{self.role}' or higher; create one with `lockgate keys create --name NAME --role {self.role}`."
            )
        key = admin_context(request).runtime.keys.lookup(credentials.credentials.strip())
        if key is None:
            raise AuthenticationFailed(
                "Incorrect or revoked API key. Check the key, or create a new one with "
                f"`lockgate keys create --name NAME --role {self.role}`."
            )
        role = _role_of(key)
        if role is None or not role.allows(self.role):
            what = "is an app key (data plane only)" if role is Role.APP else f"has role '{key.role}'"
            raise PermissionDenied(
                f"The key '{key.name}' {what}; this call needs role '{self.role}' or higher "
                f"({_LADDER}). Use a key with that role: `lockgate keys create --name NAME --role {self.role}`.",
                code="insufficient_role",
            )
        return Caller(key, role)


def _role_of(key: ApiKeyRecord) -> Role | None:
    try:
        return Role(key.role)
    except ValueError:  # written by a newer version: grant nothing rather than guess
        return None


Viewer = Annotated[Caller, Depends(RoleRequirement(Role.VIEWER))]
Reviewer = Annotated[Caller, Depends(RoleRequirement(Role.REVIEWER))]
Operator = Annotated[Caller, Depends(RoleRequirement(Role.OPERATOR))]
Deployer = Annotated[Caller, Depends(RoleRequirement(Role.DEPLOYER))]
Admin = Annotated[Caller, Depends(RoleRequirement(Role.ADMIN))]
