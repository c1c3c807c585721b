"""Everything one gateway process holds while serving, built from settings and the configuration."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockgate.auth.keys import KeyRing
from lockgate.backends.base import Backend
from lockgate.backends.http import HttpBackend
from lockgate.backends.llama_cpp import LlamaCppBackend, default_threads
from lockgate.config import LockgateConfig, ReleaseSpec, RouteConfig, load_config, load_default_config
from lockgate.config.schema import HttpBackendConfig
from lockgate.gateway.circuit import CircuitBreaker
from lockgate.gateway.ratelimit import RateLimiter
from lockgate.gateway.resilience import ReleaseCaller, chain_of
from lockgate.guards.pipeline import GuardSet
from lockgate.observe import metrics
from lockgate.observe.journal import TraceJournal
from lockgate.retrieval import Retriever
from lockgate.settings import Settings
from lockgate.store import ReleaseRecord, SqliteStore, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingRelease:
    route: str
    label: str
    spec: ReleaseSpec
    record: ReleaseRecord

    @property
    def release_id(self) -> str:
        return self.record.release_id


def load_settings_config(settings: Settings) -> LockgateConfig:
    return load_config(settings.config_path) if settings.config_path else load_default_config()


def register_releases(config: LockgateConfig, store: Store) -> dict[str, dict[str, ReleaseRecord]]:
    """Gives every declared release its version: the same content keeps its version forever."""
    registry: dict[str, dict[str, ReleaseRecord]] = {}
    for route_name, route in config.routes.items():
        registry[route_name] = {
            label: store.register_release(route_name, label, spec.content_hash(), spec.content())
            for label, spec in route.releases.items()
        }
    return registry


class Runtime:
    def __init__(self, settings: Settings, config: LockgateConfig, store: Store, *, workers: int = 1) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.keys = KeyRing(store)
        self.rate_limiter = RateLimiter(settings.ratelimit_path)
        # With several workers the supervisor loads traces (`lockgate serve`); a lone worker does it itself.
        self.journal = TraceJournal(
            settings.spool_dir, store, flush_interval_s=config.tracing.flush_interval_s, loads=workers == 1
        )
        self.backends: dict[str, Backend] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        threads = default_threads(workers)
        for name, backend_config in config.backends.items():
            if isinstance(backend_config, HttpBackendConfig):
                self.backends[name] = HttpBackend(name, backend_config)
            else:
                self.backends[name] = LlamaCppBackend(
                    name, backend_config, data_dir=settings.data_dir, threads=threads
                )
            self.breakers[name] = CircuitBreaker(
                failure_threshold=backend_config.circuit.failure_threshold,
                cooldown_s=backend_config.circuit.cooldown_s,
            )
        self.caller = ReleaseCaller(self.backends, self.breakers)
        self.registry = register_releases(config, store)
        self._tasks: list[asyncio.Task[Any]] = []
        self._guard_sets: dict[str, GuardSet] = {}
        self._retrievers: dict[str, Retriever] = {}
        for route_name in config.routes:
            self.guards_for(self.serving_release(route_name))  # load guard models before traffic
            self.retriever_for(self.serving_release(route_name))  # index the knowledge before traffic

    # -- lookups on the request path ------------------------------------------------------------

    def route(self, name: str) -> RouteConfig | None:
        return self.config.routes.get(name)

    def serving_release(self, route_name: str) -> ServingRelease:
        route = self.config.routes[route_name]
        label = route.serve
        return ServingRelease(route_name, label, route.releases[label], self.registry[route_name][label])

    def guards_for(self, release: ServingRelease) -> GuardSet:
        """Built once per release: guard objects hold compiled patterns and loaded models."""
        guards = self._guard_sets.get(release.release_id)
        if guards is None:
            guards = GuardSet(release.spec.effective_guards(), output_schema=release.spec.output_schema)
            guards.warm_up()
            self._guard_sets[release.release_id] = guards
        return guards

    def retriever_for(self, release: ServingRelease) -> Retriever | None:
        """Built once per release: the knowledge text chunked and indexed; None without retrieval."""
        if release.spec.retrieval is None:
            return None
        retriever = self._retrievers.get(release.release_id)
        if retriever is None:
            retriever = self._retrievers[release.release_id] = Retriever.from_config(release.spec.retrieval)
        return retriever

    def serving_backends(self) -> Mapping[str, Backend]:
        """Backends the serving releases may call: these must be ready before traffic is welcome."""
        names: dict[str, Backend] = {}
        for route_name in self.config.routes:
            for link in chain_of(self.serving_release(route_name).spec):
                if link.backend is not None:
                    names[link.backend] = self.backends[link.backend]
        return names

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.keys.refresh)
        self.journal.start()
        self._tasks.append(asyncio.create_task(self.keys.run_refresher()))
        self._tasks.append(asyncio.create_task(self._publish_gauges()))
        for name, backend in self.serving_backends().items():
            config = self.config.backends[name]
            if getattr(config, "load_at_start", True):
                self._tasks.append(asyncio.create_task(_start_quietly(name, backend)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.journal.stop)
        for backend in self.backends.values():
            await backend.close()

    async def _publish_gauges(self) -> None:
        while True:
            for name, breaker in self.breakers.items():
                metrics.CIRCUIT_STATE.labels(backend=name).set(breaker.state.gauge_value)
            metrics.TRACE_SPOOL_SEGMENTS.set(self.journal.spooled_segments())
            await asyncio.sleep(1.0)

    def readiness(self) -> dict[str, Any]:
        backends = {name: b.is_ready() for name, b in self.serving_backends().items()}
        return {"ready": all(backends.values()), "config": "loaded", "backends": backends, "pid": os.getpid()}


async def _start_quietly(name: str, backend: Backend) -> None:
    try:
        await backend.start()
    except Exception as exc:  # noqa: BLE001 - /readyz reports it; requests get a clear 502
        log.error("backend %s is not ready: %s", name, exc)


def open_store(settings: Settings) -> Store:
    store = SqliteStore(settings.database_path)
    store.migrate()
    return store
