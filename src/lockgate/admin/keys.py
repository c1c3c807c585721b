"""/admin/v1/keys: create, list and revoke API keys (role admin).

Hashes never leave the gateway; a key's plaintext is returned once, in the response that creates it.
The operations live in lockgate.auth.operations, shared with `lockgate keys`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from lockgate.admin.deps import Admin, AdminContext, Context
from lockgate.admin.schemas import ERROR_RESPONSES
from lockgate.auth import operations
from lockgate.auth.roles import Role
from lockgate.config.schema import NAME_PATTERN
from lockgate.errors import ServiceUnavailable
from lockgate.store import ApiKeyRecord

router = APIRouter(prefix="/keys", tags=["keys"], responses=ERROR_RESPONSES)


class KeyView(BaseModel):
    key_id: str
    name: str
    role: str = Field(description="app, viewer, reviewer, operator, deployer or admin.")
    routes: list[str] | None = Field(description="Routes an app key may use; null: every route.")
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: float
    revoked_at: float | None


class KeyList(BaseModel):
    data: list[KeyView]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=operations.MAX_KEY_NAME, description="Who or what the key is for.")
    role: Role = Field(default=Role.APP, description="`app` for the data plane; a governance role for this API.")
    routes: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, description="App keys only: the routes it may use (null: all).")
    requests_per_minute: int | None = Field(default=None, ge=1, description="App keys only.")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="App keys only.")


class KeyCreated(BaseModel):
    key: KeyView
    api_key: str = Field(description="The key itself. Shown this once: store it now.")


def _view(key: ApiKeyRecord) -> KeyView:
    return KeyView(key_id=key.key_id, name=key.name, role=key.role,
                   routes=list(key.routes) if key.routes is not None else None,
                   requests_per_minute=key.requests_per_minute, tokens_per_minute=key.tokens_per_minute,
                   created_at=key.created_at, revoked_at=key.revoked_at)


async def _refresh_key_ring(ctx: AdminContext) -> None:
    """This worker sees the change at once; the others on their next refresh (two seconds)."""
    try:
        await ctx.call(ctx.runtime.keys.refresh)
    except ServiceUnavailable:
        pass  # the change is stored; the background refresher catches up


@router.get("", response_model=KeyList, summary="List API keys (never the keys themselves)")
async def list_keys(caller: Admin, ctx: Context,
                    include_revoked: bool = Query(default=False, description="Include revoked keys.")) -> KeyList:
    keys = await ctx.call(ctx.store.list_keys, include_revoked)
    return KeyList(data=[_view(k) for k in keys])


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED, summary="Create an API key")
async def create_key(body: KeyCreate, caller: Admin, ctx: Context) -> KeyCreated:
    new = await ctx.call(operations.create_api_key, ctx.store, caller.actor, name=body.name, role=body.role.value,
                         routes=body.routes, requests_per_minute=body.requests_per_minute,
                         tokens_per_minute=body.tokens_per_minute)
    await _refresh_key_ring(ctx)
    return KeyCreated(key=_view(new.record), api_key=new.plaintext)


@router.delete("/{key}", response_model=KeyList, summary="Revoke a key by id, or every active key with a name")
async def revoke_key(key: str, caller: Admin, ctx: Context) -> KeyList:
    """Gateways stop accepting a revoked key within seconds. Returns the keys revoked."""
    revoked = await ctx.call(operations.revoke_api_keys, ctx.store, caller.actor, key)
    await _refresh_key_ring(ctx)
    return KeyList(data=[_view(k) for k in revoked])
