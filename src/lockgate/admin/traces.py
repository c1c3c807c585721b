"""/admin/v1/traces: the records of recent requests, and one in full."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from lockgate.admin.deps import Context, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES
from lockgate.errors import NotFound

router = APIRouter(prefix="/traces", tags=["traces"], responses=ERROR_RESPONSES)


class TraceList(BaseModel):
    data: list[dict[str, Any]]


@router.get("", response_model=TraceList, summary="The most recent traces, newest first")
async def list_traces(caller: Viewer, ctx: Context,
                      route: str | None = Query(default=None, description="Only this route."),
                      limit: int = Query(default=20, ge=1, le=1000)) -> TraceList:
    return TraceList(data=await ctx.call(ctx.store.recent_traces, limit, route))


@router.get("/{trace_id}", response_model=dict[str, Any], summary="One trace in full")
async def get_trace(trace_id: str, caller: Viewer, ctx: Context) -> dict[str, Any]:
    trace = await ctx.call(ctx.store.get_trace, trace_id)
    if trace is None:
        raise NotFound(
            f"No trace '{trace_id}'. Traces reach the store within a second of the response (later while the "
            "database is down); the trace id is the response's `x-request-id`."
        )
    return trace
