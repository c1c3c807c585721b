"""/admin/v1/audit: the hash-chained audit log, in order, from a sequence number on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lockgate.admin.deps import Context, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES

MAX_SEQ = 2**63 - 1  # SQL's BIGINT, the largest sequence number a store holds

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)


class AuditView(BaseModel):
    seq: int
    ts: float
    actor: str = Field(description="The key name (admin API) or `cli:USER` (command line).")
    action: str = Field(examples=["release.create", "key.create", "key.revoke"])
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str = Field(description="sha256(prev_hash + canonical JSON of seq, ts, actor, action, target, details).")


class AuditPage(BaseModel):
    data: list[AuditView]
    next_since: int = Field(description="Pass as `since` to read on from here; unchanged when nothing is new.")


@router.get("", response_model=AuditPage, summary="Audit records after a sequence number")
async def list_audit(caller: Viewer, ctx: Context,
                     since: int = Query(default=0, ge=0, le=MAX_SEQ, description="Records with seq greater than this."),
                     limit: int = Query(default=100, ge=1, le=1000)) -> AuditPage:
    records = await ctx.call(ctx.store.list_audit, since, limit)
    return AuditPage(
        data=[AuditView(seq=r.seq, ts=r.ts, actor=r.actor, action=r.action, target=r.target, details=r.details,
                        prev_hash=r.prev_hash, hash=r.hash) for r in records],
        next_since=records[-1].seq if records else since,
    )
