"""/admin/v1/routes: the routes this gateway serves and the release serving each.

Answered from the gateway's memory (its configuration and release registry), so it works while the
database is down.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lockgate.admin.deps import Context, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES
from lockgate.errors import NotFound
from lockgate.gateway.runtime import Runtime

router = APIRouter(prefix="/routes", tags=["routes"], responses=ERROR_RESPONSES)


class ServingRelease(BaseModel):
    release: str = Field(description="ROUTE@VERSION", examples=["support-bot@2"])
    label: str
    version: int
    content_hash: str


class RateLimitView(BaseModel):
    requests_per_minute: int | None
    tokens_per_minute: int | None


class RouteView(BaseModel):
    route: str
    description: str | None
    serving: ServingRelease
    declared: dict[str, str] = Field(description="Every release the configuration declares: label -> ROUTE@VERSION.")
    rate_limit: RateLimitView
    trace_content: str


class RouteList(BaseModel):
    data: list[RouteView]


def _view(runtime: Runtime, name: str) -> RouteView:
    route = runtime.config.routes[name]
    serving = runtime.serving_release(name)
    return RouteView(
        route=name,
        description=route.description,
        serving=ServingRelease(release=serving.release_id, label=serving.label, version=serving.record.version,
                               content_hash=serving.record.content_hash),
        declared={label: record.release_id for label, record in runtime.registry[name].items()},
        rate_limit=RateLimitView(**route.rate_limit.model_dump()),
        trace_content=route.trace_content,
    )


@router.get("", response_model=RouteList, summary="List routes with the release serving each")
async def list_routes(caller: Viewer, ctx: Context) -> RouteList:
    return RouteList(data=[_view(ctx.runtime, name) for name in sorted(ctx.config.routes)])


@router.get("/{route}", response_model=RouteView, summary="One route")
async def get_route(route: str, caller: Viewer, ctx: Context) -> RouteView:
    if route not in ctx.config.routes:
        known = ", ".join(sorted(ctx.config.routes)) or "none"
        raise NotFound(f"No route '{route}' on this gateway (routes: {known}).")
    return _view(ctx.runtime, route)
