"""The admin API: /admin/v1/..., with its OpenAPI document at /admin/openapi.json.

A FastAPI application (`create_admin_app`) that the gateway mounts at /admin. One module per
resource, each with its own `router`; the operations themselves live beside their capability
(`lockgate.releases.operations`, `lockgate.auth.operations`) and are shared with the CLI, so a
router only translates HTTP to an operation call and the result to a response model.

Adding a resource (say rollouts)
--------------------------------

1. Write the operations as plain functions in your own package (e.g. `lockgate/rollout/operations.py`):
   take the store, an `Actor` (lockgate.auth.actor) and typed arguments; raise `InvalidRequest`,
   `NotFound` or another `lockgate.errors.LockgateError` with a message that says how to fix the
   input; after each change append an audit record::

       store.append_audit(actor.name, "rollout.pause", "support-bot", {**actor.audit_details(), ...})

   The CLI command calls the same function with `Actor.cli()`.

2. Add `lockgate/admin/rollouts.py`::

       from fastapi import APIRouter
       from lockgate.admin.deps import Context, Operator, Viewer
       from lockgate.admin.schemas import ERROR_RESPONSES

       router = APIRouter(prefix="/rollouts", tags=["rollouts"], responses=ERROR_RESPONSES)

       @router.post("/{route}/pause", response_model=RolloutView)
       async def pause(route: str, caller: Operator, ctx: Context) -> RolloutView:
           state = await ctx.call(operations.pause_rollout, ctx.store, caller.actor, route)
           return RolloutView.from_state(state)

   - Auth and role: annotate a parameter with `Viewer`, `Reviewer`, `Operator`, `Deployer` or
     `Admin` (lockgate.admin.deps). It answers 401 without a valid key and 403 naming the role
     needed when the key's is lower; the OpenAPI document shows the role (`x-lockgate-role`).
     `caller.actor` is what the audit record names.
   - Store access: always through `await ctx.call(fn, *args)`. It runs `fn` in the admin API's own
     thread pool, never on the event loop, and turns `StoreUnavailable` (or no answer within
     10 s) into a 503 that says so. In-memory state (`ctx.runtime`, `ctx.config`) needs no call.
   - Errors: raise `LockgateError` subclasses; the app renders them as the data plane's error body.
     Request bodies are pydantic models (`extra="forbid"`); their validation errors become a 422
     naming each bad field.
   - Responses: declare a pydantic `response_model`, so the OpenAPI document describes it.

3. Add `rollouts.router` to `ROUTERS` in lockgate/admin/app.py, and its paths to the test that checks
   the OpenAPI document lists every endpoint (tests/test_admin_api.py).
"""

from lockgate.admin.app import create_admin_app

__all__ = ["create_admin_app"]
