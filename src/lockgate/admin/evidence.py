"""/admin/v1/releases/{release_id}/evidence: what a release was judged on (eval and red-team runs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lockgate.admin.deps import Context, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES, ReleaseId
from lockgate.releases.operations import find_release
from lockgate.store import EvidenceRecord, Store

router = APIRouter(prefix="/releases", tags=["evidence"], responses=ERROR_RESPONSES)


class EvidenceView(BaseModel):
    evidence_id: int
    release: str
    kind: str = Field(description="`eval` or `redteam`.")
    passed: bool | None = Field(description="The gate's verdict; null where the run has none.")
    summary: dict[str, Any]
    created_at: float


class EvidenceList(BaseModel):
    data: list[EvidenceView]


def _evidence_of(store: Store, release_id: str, kind: str | None) -> list[EvidenceRecord]:
    record = find_release(store, release_id, param="release_id")
    return store.list_evidence(record.route, record.version, kind)


@router.get("/{release_id}/evidence", response_model=EvidenceList, summary="A release's evidence, oldest first")
async def list_evidence(release_id: ReleaseId, caller: Viewer, ctx: Context,
                        kind: str | None = Query(default=None, description="Only this kind, e.g. `eval`.")
                        ) -> EvidenceList:
    records = await ctx.call(_evidence_of, ctx.store, release_id, kind)
    return EvidenceList(data=[EvidenceView(evidence_id=e.evidence_id, release=e.release_id, kind=e.kind,
                                           passed=e.passed, summary=e.summary, created_at=e.created_at)
                              for e in records])
