"""Serving one release in process, exactly as live traffic meets it: shared by `lockgate eval` and
`lockgate redteam`.

`open_release` opens the store, registers the configuration's releases and resolves `ROUTE@N` or
`ROUTE:LABEL`; `serve` builds a `Runtime` with the route's `serve` switched to that release, runs
the ASGI app in process (lifespan included, so backends and guards load) and yields an HTTP client
for it; `ask` POSTs one conversation to `/v1/chat/completions` and reads the answer the way a
client would, including an input guard's refusal (see `evals/refusals.py`); `run_bounded` runs
many of them with a concurrency bound and a progress callback.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from lockgate.config import LockgateConfig
from lockgate.evals import refusals
from lockgate.gateway.runtime import ServingRelease
from lockgate.releases import parse_release_id
from lockgate.settings import Settings
from lockgate.store import ReleaseRecord, Store

GUARD_ACTION_HEADER = "x-lockgate-guard-action"
REQUEST_TIMEOUT_S = 600.0

T = TypeVar("T")
R = TypeVar("R")


class EvalSetupError(RuntimeError):
    """The evaluation could not be set up (unknown release, bad configuration, backend not loadable)."""


# -- which release ------------------------------------------------------------------------------


def resolve_release(config: LockgateConfig, registry: dict[str, dict[str, ReleaseRecord]],
                    store: Store, ref: str) -> ServingRelease:
    """`ROUTE@N` (a registered version) or `ROUTE:LABEL` (a label in the configuration)."""
    if "@" in ref:
        route = ref.partition("@")[0]
        if route not in config.routes:
            raise EvalSetupError(_unknown_route(config, route, ref))
        parsed = parse_release_id(ref)
        record = store.get_release(*parsed) if parsed else None
        if record is None:
            known = ", ".join(r.release_id for r in store.list_releases(route)) or "none"
            raise EvalSetupError(f"no release {ref}; registered releases of {route!r}: {known} "
                                 "(see `lockgate release list`)")
        for label, spec in config.routes[route].releases.items():
            if spec.content_hash() == record.content_hash:
                return _serving(config, registry, route, label)
        raise EvalSetupError(f"release {ref} ({record.label}) is no longer declared in the configuration with the "
                             "same content, so it cannot be served; evaluate a release the configuration declares")
    if ":" in ref:
        route, _, label = ref.partition(":")
        if route not in config.routes:
            raise EvalSetupError(_unknown_route(config, route, ref))
        if label not in config.routes[route].releases:
            known = ", ".join(sorted(config.routes[route].releases))
            raise EvalSetupError(f"route {route!r} has no release labelled {label!r} (labels: {known})")
        return _serving(config, registry, route, label)
    raise EvalSetupError(f"cannot read release {ref!r}: use ROUTE@VERSION (e.g. support-bot@2) or ROUTE:LABEL "
                         "(e.g. support-bot:v2)")


def _serving(
    config: LockgateConfig, registry: dict[str, dict[str, ReleaseRecord]], route: str, label: str
) -> ServingRelease:
    return ServingRelease(route, label, config.routes[route].releases[label], registry[route][label])


def _unknown_route(config: LockgateConfig, route: str, ref: str) -> str:
    return f"release {ref!r}: no route {route!r} in the configuration (routes: {', '.join(sorted(config.routes))})"


def open_store_and_registry(settings: Settings, config: LockgateConfig) -> tuple[Store,
                                                                                  dict[str, dict[str, ReleaseRecord]]]:
    """The store (created when missing) with every declared release registered. Raises EvalSetupError."""
    from lockgate.gateway.runtime import open_store, register_releases

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(settings)
    except Exception as exc:
        raise EvalSetupError(f"cannot open the store in {settings.data_dir}: {exc}") from exc
    return store, register_releases(config, store)


def release_info(ref: ServingRelease) -> dict[str, Any]:
    return {"id": ref.release_id, "route": ref.route, "label": ref.label, "version": ref.record.version,
            "content_hash": ref.record.content_hash}


def config_for(config: LockgateConfig, ref: ServingRelease) -> LockgateConfig:
    """The configuration with `ref` serving its route and no API key needed (in-process only)."""
    route = config.routes[ref.route].model_copy(update={"serve": ref.label})
    server = config.server.model_copy(update={"require_api_key": False})
    return config.model_copy(update={"routes": {**config.routes, ref.route: route}, "server": server})


# -- serving it ---------------------------------------------------------------------------------


@asynccontextmanager
async def serve(settings: Settings, config: LockgateConfig, store: Store,
                ref: ServingRelease) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the gateway app serving `ref`, with every backend it needs loaded."""
    from lockgate.gateway.app import create_app
    from lockgate.gateway.runtime import Runtime

    try:
        # The release under test, whatever a live rollout on the same store is doing.
        runtime = Runtime(settings, config_for(config, ref), store, workers=1, follow_route_state=False,
                          run_controller=False)
    except Exception as exc:
        raise EvalSetupError(f"cannot build the gateway for {ref.release_id}: {exc}") from exc
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        for name, backend in runtime.serving_backends().items():
            try:
                await backend.start()
            except Exception as exc:
                raise EvalSetupError(f"backend {name!r} of {ref.release_id} failed to load: {exc}") from exc
            if not backend.is_ready():
                detail = getattr(backend, "load_error", None)
                raise EvalSetupError(f"backend {name!r} of {ref.release_id} is not ready"
                                     + (f": {detail}" if detail else ""))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lockgate") as client:
            yield client


async def run_bounded(items: Sequence[T], one: Callable[[T], Awaitable[R]], concurrency: int,
                      progress: Callable[[int, int], None]) -> list[R]:
    """`one(item)` for every item, at most `concurrency` at a time; results in the items' order."""
    sem = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def bounded(item: T) -> R:
        nonlocal done
        async with sem:
            result = await one(item)
        done += 1
        progress(done, len(items))
        return result

    return list(await asyncio.gather(*(bounded(i) for i in items)))


def stderr_progress(verb: str, label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{verb} {label}: {done}/{total}{end}")
        sys.stderr.flush()
    return show


# -- one request --------------------------------------------------------------------------------


@dataclass
class Answer:
    """What the client got: the answer's text, or the guards' refusal, or an error."""

    output: str = ""
    latency_ms: float = 0.0
    status: int | None = None
    guard_action: str | None = None
    withheld: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    error: str | None = None


async def ask(client: httpx.AsyncClient, route: str, messages: list[dict[str, Any]]) -> Answer:
    answer = Answer()
    started = time.perf_counter()
    try:
        resp = await client.post("/v1/chat/completions", json={"model": route, "messages": messages},
                                 timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any transport failure is this request's error
        answer.latency_ms = (time.perf_counter() - started) * 1000
        answer.error = f"request failed: {exc!r}"
        return answer
    answer.latency_ms = (time.perf_counter() - started) * 1000
    answer.status = resp.status_code
    answer.guard_action = resp.headers.get(GUARD_ACTION_HEADER)
    answer.withheld = refusals.withheld_by_guard(answer.guard_action)
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        if not answer.withheld:
            answer.error = f"HTTP {resp.status_code}: {message or resp.text[:300]}"
            return answer
        # An input guard refused the request: a refusal (see evals/refusals.py), read like an answer
        # whose text is the gateway's message.
        body = {"choices": [{"message": {"content": message or ""}, "finish_reason": "content_filter"}]}
    try:
        choice = body["choices"][0]
        answer.output = choice["message"].get("content") or ""
        answer.finish_reason = choice.get("finish_reason")
        usage = body.get("usage") or {}
        answer.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        answer.completion_tokens = int(usage.get("completion_tokens") or 0)
        answer.total_tokens = int(usage.get("total_tokens") or answer.prompt_tokens + answer.completion_tokens)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        answer.error = f"unexpected response body ({exc!r}): {resp.text[:300]}"
    return answer
