"""/admin/v1/rollouts, /admin/v1/flags, /admin/v1/experiments: the control plane over HTTP.

The same operations as `lockgate rollout|flag|experiment` (lockgate.control.commands); a request
that does not apply to the route's state (pause with no rollout, approve by the wrong person) is a
409 whose message says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from lockgate.admin.deps import Context, Deployer, Operator, Viewer
from lockgate.admin.schemas import ERROR_RESPONSES, error_response
from lockgate.control import commands
from lockgate.control.state import RouteState
from lockgate.errors import Conflict, NotFound
from lockgate.rollout import status
from lockgate.rollout.machine import RolloutError

router = APIRouter(tags=["rollouts"], responses={
    **ERROR_RESPONSES, 409: error_response("Does not apply to the route's current state; the message says why."),
})

T = TypeVar("T")


class RouteStateView(BaseModel):
    """The route's state: stable release, kill switch, the rollout (or the last one) and experiment."""

    model_config = ConfigDict(extra="allow")

    route: str
    stable: int
    last_good: int | None = None
    kill_switch: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    experiment: dict[str, Any] | None = None
    summary: str = Field(description="One line: what serves the route.")
    status_text: str = Field(description="`lockgate rollout status` as text.")


class StartRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: str = Field(description="A label (v2), a version (3) or ROUTE@N.", examples=["v2"])
    plan: str | None = Field(default=None, description="A plan declared under the route; default: `default`.")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why, for the audit log.")


class KillSwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "last_good", "static"]
    message: str | None = Field(default=None, max_length=4000, description="The static answer (mode static).")
    reason: str = Field(default="", max_length=500)


class StartExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="An experiment declared under the route.")


def _view(state: RouteState) -> RouteStateView:
    body = status.as_json(state)
    return RouteStateView(**body, summary=status.route_summary(state), status_text=status.render(state))


async def _run(ctx: Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def guarded() -> T:
        try:
            return fn(*args, **kwargs)
        except RolloutError as exc:
            raise Conflict(str(exc)) from exc
    return await ctx.call(guarded)


def _known(ctx: Context, route: str) -> None:
    if route not in ctx.config.routes:
        raise NotFound(f"No route '{route}'. Routes: {', '.join(sorted(ctx.config.routes))}.")


@router.get("/rollouts/{route}", response_model=RouteStateView, summary="The route's rollout status")
async def rollout_status(route: str, caller: Viewer, ctx: Context) -> RouteStateView:
    _known(ctx, route)
    return _view(await _run(ctx, commands.state_of, ctx.store, route))


@router.post("/rollouts/{route}/start", response_model=RouteStateView, summary="Start a rollout by a plan")
async def rollout_start(route: str, body: StartRollout, caller: Deployer, ctx: Context) -> RouteStateView:
    _known(ctx, route)
    return _view(await _run(ctx, commands.start_rollout, ctx.config, ctx.store, route, body.candidate,
                            plan_name=body.plan, actor=caller.actor.name))


def _action(name: str, summary: str, role: Any) -> None:
    async def act(route: str, body: Reason, caller: Any, ctx: Context) -> RouteStateView:
        _known(ctx, route)
        return _view(await _run(ctx, commands.apply, ctx.store, route, name, actor=caller.actor.name,
                                reason=body.reason))
    act.__annotations__ = {"route": str, "body": Reason, "caller": role, "ctx": Context, "return": RouteStateView}
    act.__name__ = f"rollout_{name}"
    router.post(f"/rollouts/{{route}}/{name}", response_model=RouteStateView, summary=summary)(act)


_action("pause", "Hold the rollout at its step and weights", Operator)
_action("resume", "Continue a paused rollout", Operator)
_action("approve", "Approve a gate step (the key's name must be the gate's approver)", Deployer)
_action("promote", "Make the candidate stable now", Deployer)
_action("abort", "Stop the rollout; the candidate gets no traffic", Operator)
_action("rollback", "Roll back now; the candidate gets no traffic", Operator)


@router.get("/flags/{route}", summary="The route's flags")
async def flags_get(route: str, caller: Viewer, ctx: Context) -> dict[str, Any]:
    _known(ctx, route)
    return commands.flags_of(await _run(ctx, commands.state_of, ctx.store, route))


@router.put("/flags/{route}/kill_switch", response_model=RouteStateView,
            summary="Kill switch: serve the last good release, a static answer, or turn it off")
async def kill_switch(route: str, body: KillSwitchBody, caller: Operator, ctx: Context) -> RouteStateView:
    _known(ctx, route)
    return _view(await _run(ctx, commands.set_kill_switch, ctx.store, route, body.mode, actor=caller.actor.name,
                            message=body.message, reason=body.reason))


@router.post("/experiments/{route}/start", response_model=RouteStateView, summary="Start an A/B/n experiment")
async def experiment_start(route: str, body: StartExperiment, caller: Deployer, ctx: Context) -> RouteStateView:
    _known(ctx, route)
    return _view(await _run(ctx, commands.start_experiment, ctx.config, ctx.store, route, body.name,
                            actor=caller.actor.name))


@router.post("/experiments/{route}/stop", response_model=RouteStateView, summary="Stop the route's experiment")
async def experiment_stop(route: str, caller: Operator, ctx: Context) -> RouteStateView:
    _known(ctx, route)
    return _view(await _run(ctx, commands.stop_experiment, ctx.store, route, actor=caller.actor.name))


@router.get("/experiments/{route}/report", summary="Arms compared per metric, with a sample-ratio check")
async def experiment_report(route: str, caller: Viewer, ctx: Context, since_s: float = 3600) -> dict[str, Any]:
    from lockgate.rollout.experiments import compare_arms

    _known(ctx, route)
    state = await _run(ctx, commands.state_of, ctx.store, route)
    if state.experiment is None:
        raise Conflict(f"No experiment runs on {route}; start one with POST /admin/v1/experiments/{route}/start.")
    return await ctx.call(compare_arms, ctx.store, state, since=time.time() - max(1.0, min(since_s, 30 * 86400)))
