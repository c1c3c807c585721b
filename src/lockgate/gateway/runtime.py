"""Everything one gateway process holds while serving, built from settings and the configuration."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from lockgate.alerts.evaluator import build_alert_evaluator
from lockgate.audit.actions import default_actor, record_release_created
from lockgate.auth.keys import KeyRing
from lockgate.backends.base import Backend
from lockgate.backends.http import HttpBackend
from lockgate.backends.llama_cpp import LlamaCppBackend, default_threads
from lockgate.cluster.changes import follow_route_changes, install_announcer
from lockgate.cluster.connection import redis_target
from lockgate.cluster.live import LiveCounters, live_windows
from lockgate.cluster.ratelimit import RedisRateLimiter
from lockgate.config import LockgateConfig, ReleaseSpec, RouteConfig, load_config, load_default_config
from lockgate.config.schema import HttpBackendConfig
from lockgate.control.cache import ControlCache
from lockgate.control.state import RouteState
from lockgate.drift.publish import drift_collectors
from lockgate.gateway.circuit import CircuitBreaker
from lockgate.gateway.ratelimit import RateLimiter, SqliteRateLimiter
from lockgate.gateway.resilience import ReleaseCaller, chain_of
from lockgate.gateway.shadow import ShadowRunner
from lockgate.guards.pipeline import GuardSet
from lockgate.observe import metrics
from lockgate.observe.journal import TraceJournal
from lockgate.observe.otel import build_request_spans
from lockgate.observe.retention import RetentionSweeper
from lockgate.privacy.content import TraceContent
from lockgate.privacy.pseudonym import Pseudonyms
from lockgate.privacy.secret import install_secret
from lockgate.retrieval import Retriever
from lockgate.rollout.analysis import Analyzer
from lockgate.rollout.controller import RolloutController
from lockgate.settings import Settings
from lockgate.store import ReleaseRecord, Store, StoreUnavailable, open_url

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


def register_releases(
    config: LockgateConfig, store: Store, *, actor: str | None = None
) -> dict[str, dict[str, ReleaseRecord]]:
    """Gives every declared release its version: the same content keeps its version forever. A
    version created here is recorded in the audit log (by `actor`, default the OS user)."""
    known = {(r.route, r.content_hash) for r in store.list_releases()}
    registry: dict[str, dict[str, ReleaseRecord]] = {}
    for route_name, route in config.routes.items():
        registry[route_name] = {}
        for label, spec in route.releases.items():
            record = store.register_release(route_name, label, spec.content_hash(), spec.content())
            registry[route_name][label] = record
            if (route_name, record.content_hash) not in known:
                known.add((route_name, record.content_hash))
                record_release_created(store, record, actor or default_actor())
    return registry


class Runtime:
    def __init__(self, settings: Settings, config: LockgateConfig, store: Store, *, workers: int = 1,
                 follow_route_state: bool = True, run_controller: bool | None = None) -> None:
        """`follow_route_state=False` serves each route's configured `serve:` release whatever the
        control plane says (an evaluation of one release must not be re-routed by a live rollout).
        `run_controller`: advance rollouts from this process; by default the process that loads
        traces does it (the lone worker; with several workers, the `serve` supervisor)."""
        self.settings = settings
        self.config = config
        self.store = store
        self.keys = KeyRing(store)
        # With Redis, limits, live counters and route change notices are shared by every replica (lockgate.cluster).
        self.redis = redis_target(settings, config)
        install_announcer(self.redis)
        self.rate_limiter: RateLimiter = (RedisRateLimiter(self.redis) if self.redis is not None
                                          else SqliteRateLimiter(settings.ratelimit_path))
        self.live = LiveCounters(self.redis) if self.redis is not None else None
        secret = install_secret(settings.data_dir)
        self.pseudonyms = Pseudonyms(secret)
        self.trace_content = TraceContent(secret)
        # With several workers the supervisor loads traces (`lockgate serve`); a lone worker does it itself,
        # and deletes expired ones where it loads them.
        loads = workers == 1
        self.journal = TraceJournal(
            settings.spool_dir, store, flush_interval_s=config.tracing.flush_interval_s, loads=loads,
            housekeeping=RetentionSweeper(store, config) if loads else None,
        )
        self.telemetry = build_request_spans(config.telemetry)  # None unless an OTLP endpoint is configured
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
        self._releases: dict[tuple[str, int], ServingRelease] = {
            (route, record.version): ServingRelease(route, label, config.routes[route].releases[label], record)
            for route, records in self.registry.items()
            for label, record in records.items()
        }
        declared = {route: self.registry[route][rc.serve].version for route, rc in config.routes.items()}
        self.follow_route_state = follow_route_state
        self.control = ControlCache(store, declared if follow_route_state else {},
                                    refresh_interval_s=config.server.state_poll_s)
        self._declared = declared
        if follow_route_state:
            self.control.refresh()
            self._load_referenced_releases()
        run_controller = workers == 1 and follow_route_state if run_controller is None else run_controller
        windows = live_windows(store, self.redis)
        self.controller = (RolloutController(store, list(config.routes), analyzer=Analyzer(store, windows=windows))
                           if run_controller else None)
        # Next to the rollouts.
        self.alerts = build_alert_evaluator(store, config, windows=windows) if run_controller else None
        self.shadows = ShadowRunner(self)
        # Scores computed elsewhere (the drift monitor of `lockgate serve`), shown on this process's /metrics.
        self.metric_collectors = drift_collectors(settings, config)
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._guard_sets: dict[str, GuardSet] = {}
        self._retrievers: dict[str, Retriever] = {}
        for route_name in config.routes:
            self.guards_for(self.serving_release(route_name))  # load guard models before traffic
            self.retriever_for(self.serving_release(route_name))  # index the knowledge before traffic

    # -- lookups on the request path ------------------------------------------------------------

    def route(self, name: str) -> RouteConfig | None:
        return self.config.routes.get(name)

    def serving_release(self, route_name: str) -> ServingRelease:
        """The route's stable release right now."""
        return self.release_for(route_name, self.route_state(route_name).stable)

    def route_state(self, route_name: str) -> RouteState:
        if not self.follow_route_state:
            return RouteState(route=route_name, stable=self._declared[route_name])
        return self.control.state(route_name)

    def release_for(self, route_name: str, version: int) -> ServingRelease:
        release = self._releases.get((route_name, version))
        if release is None:
            # Not preloaded yet (a release registered through the admin API a moment ago): read it now.
            self._load_release(route_name, version)
            release = self._releases[(route_name, version)]
        return release

    def _load_release(self, route_name: str, version: int) -> None:
        record = self.store.get_release(route_name, version)
        if record is None:
            raise KeyError(f"{route_name}@{version} is not in the release registry")
        spec = ReleaseSpec.model_validate(record.content)
        self._releases[(route_name, version)] = ServingRelease(route_name, record.label, spec, record)

    def _load_referenced_releases(self) -> None:
        """Every release a route's state may send traffic to is loaded before a request needs it."""
        for route_name in self.config.routes:
            state = self.control.state(route_name)
            versions = {state.stable, state.last_good}
            rollout = state.active_rollout()
            if rollout is not None:
                versions |= {rollout.candidate, rollout.stable}
            if state.experiment is not None:
                versions |= set(state.experiment.arms)
            for version in versions - {None}:
                if (route_name, version) not in self._releases:
                    try:
                        self._load_release(route_name, version)  # type: ignore[arg-type]
                    except (KeyError, ValueError, StoreUnavailable) as exc:
                        log.error("cannot load %s@%s for serving: %s", route_name, version, exc)

    def _refresh_control(self) -> None:
        self.control.refresh()
        self._load_referenced_releases()

    async def _run_control_refresher(self) -> None:
        while True:
            await asyncio.sleep(self.control.refresh_interval_s)
            await asyncio.to_thread(self._refresh_control)

    async def _route_changed(self, route: str, revision: int) -> None:
        """A change announced through Redis: read that route now rather than at the next poll."""
        if revision > self.control.revision(route):
            await asyncio.to_thread(self._refresh_route, route)

    def _refresh_route(self, route: str) -> None:
        if self.control.refresh_route(route):
            self._load_referenced_releases()

    async def _refresh_all(self) -> None:
        await asyncio.to_thread(self._refresh_control)

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Runs `work` after the response: kept referenced until done (the loop holds tasks only weakly)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        if self.follow_route_state:
            self._tasks.append(asyncio.create_task(self._run_control_refresher()))
            if self.redis is not None:
                self._tasks.append(asyncio.create_task(follow_route_changes(
                    self.redis, on_change=self._route_changed, on_subscribed=self._refresh_all)))
        if self.live is not None:
            self._tasks.append(asyncio.create_task(self.live.run_flusher()))
        if self.controller is not None:
            self.controller.start()
        if self.alerts is not None:
            self.alerts.start()
        self._tasks.append(asyncio.create_task(self._publish_gauges()))
        for name, backend in self.serving_backends().items():
            config = self.config.backends[name]
            if getattr(config, "load_at_start", True):
                self._tasks.append(asyncio.create_task(_start_quietly(name, backend)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.shadows.drain()
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.stop)
        await asyncio.to_thread(self.journal.stop)
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)
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
    """The store the settings name, migrated to the newest schema; StoreUnavailable if it cannot be reached."""
    try:
        store = open_url(settings.database_url)
    except ValueError as exc:
        raise StoreUnavailable(str(exc)) from exc
    store.migrate()
    return store
