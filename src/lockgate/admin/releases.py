"""/admin/v1/releases: list, show, register and diff releases.

The operations themselves live in lockgate.releases.operations, shared with `lockgate release`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from lockgate.admin.deps import Context, Deployer, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES, ReleaseId
from lockgate.config.schema import NAME_PATTERN, ReleaseSpec
from lockgate.releases import operations
from lockgate.releases.diff import Change
from lockgate.store import ReleaseRecord

router = APIRouter(prefix="/releases", tags=["releases"], responses=ERROR_RESPONSES)

RELEASE_ID = "ROUTE@VERSION, e.g. support-bot@2"


class ReleaseView(BaseModel):
    release: str = Field(description="ROUTE@VERSION", examples=["support-bot@2"])
    route: str
    version: int
    label: str
    content_hash: str
    created_at: float
    serving: bool = Field(description="True when this is the release the route serves now.")


class ReleaseDetail(ReleaseView):
    content: dict[str, Any] = Field(description="Everything that shapes an answer; its hash is the identity.")


class ReleaseList(BaseModel):
    data: list[ReleaseView]


class ReleaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    route: str = Field(description="A route declared in the gateway's configuration.", examples=["support-bot"])
    label: str = Field(default="api", pattern=NAME_PATTERN,
                       description="A name for people (e.g. `v3`); kept with the first registration.")
    spec: ReleaseSpec = Field(description="The release, as under `routes.ROUTE.releases.LABEL` in lockgate.yaml.")


class ReleaseRegistered(ReleaseDetail):
    created: bool = Field(description="False when this content was already registered: it keeps its version.")


class ChangeView(BaseModel):
    path: str = Field(description="Dotted key path, e.g. `params.temperature`.")
    kind: Literal["added", "removed", "changed"]
    old: Any = Field(default=None, description="Absent (null) when added.")
    new: Any = Field(default=None, description="Absent (null) when removed.")


class ReleaseDiffView(BaseModel):
    # `from` is a Python keyword, hence the aliases; responses use the aliases.
    old: str = Field(alias="from", description="The release compared against (`against`).")
    new: str = Field(alias="to", description="The release asked about.")
    changes: list[ChangeView]


def _serving_hashes(ctx: Context) -> dict[str, str]:
    return {name: ctx.runtime.serving_release(name).record.content_hash for name in ctx.config.routes}


def _detail(record: ReleaseRecord, serving: dict[str, str]) -> dict[str, Any]:
    return {"release": record.release_id, "route": record.route, "version": record.version, "label": record.label,
            "content_hash": record.content_hash, "created_at": record.created_at,
            "serving": operations.is_serving(record, serving), "content": record.content}


@router.get("", response_model=ReleaseList, summary="List registered releases, oldest first")
async def list_releases(caller: Viewer, ctx: Context,
                        route: str | None = Query(default=None, description="Only this route.")) -> ReleaseList:
    listed = await ctx.call(operations.list_releases, ctx.store, _serving_hashes(ctx), route)
    return ReleaseList(data=[ReleaseView(release=item.record.release_id, route=item.record.route,
                                         version=item.record.version, label=item.record.label,
                                         content_hash=item.record.content_hash, created_at=item.record.created_at,
                                         serving=item.serving) for item in listed])


@router.post("", response_model=ReleaseRegistered, status_code=status.HTTP_201_CREATED,
             summary="Register a release for a route",
             responses={200: {"model": ReleaseRegistered, "description": "The same content was already registered."}})
async def create_release(body: ReleaseCreate, caller: Deployer, ctx: Context, response: Response) -> ReleaseRegistered:
    """Gives the release its version: 201 with a new version for new content, 200 with the existing
    version when the same content was registered before (under any label). Registering does not
    change what the route serves."""
    registered = await ctx.call(operations.register_release, ctx.store, ctx.config, caller.actor,
                                route=body.route, spec=body.spec, label=body.label)
    if not registered.created:
        response.status_code = status.HTTP_200_OK
    return ReleaseRegistered(**_detail(registered.record, _serving_hashes(ctx)), created=registered.created)


@router.get("/{release_id}", response_model=ReleaseDetail, summary="One release with its full content")
async def get_release(release_id: ReleaseId, caller: Viewer, ctx: Context) -> ReleaseDetail:
    record = await ctx.call(operations.find_release, ctx.store, release_id, param="release_id")
    return ReleaseDetail(**_detail(record, _serving_hashes(ctx)))


@router.get("/{release_id}/diff", response_model=ReleaseDiffView, summary="What changed from another release")
async def diff_release(
    release_id: ReleaseId, caller: Viewer, ctx: Context,
    against: Annotated[ReleaseId, Query(description=f"The release to compare with: {RELEASE_ID}.")],
) -> ReleaseDiffView:
    """Every key path that differs from `against` (old) to `release_id` (new)."""
    diff = await ctx.call(operations.diff_releases, ctx.store, against, release_id, old_param="against")
    return ReleaseDiffView.model_validate({"from": diff.old.release_id, "to": diff.new.release_id,
                                           "changes": [_change(c) for c in diff.changes]})


def _change(change: Change) -> ChangeView:
    return ChangeView(path=change.path, kind=change.kind,  # type: ignore[arg-type]
                      old=None if change.kind == "added" else change.old,
                      new=None if change.kind == "removed" else change.new)
