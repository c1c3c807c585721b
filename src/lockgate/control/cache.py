"""Every worker's copy of the routes' state, refreshed from the store a few times a second, and at
once for a route whose change was announced through Redis (lockgate.cluster.changes).

The request path reads only this copy, never the database: when the store is down, the last state
read keeps serving (a rollback issued meanwhile waits until the store is back, which is the
trade-off the 'request path never depends on the database' rule makes).

A copy only moves forward: of a full refresh and an announced route's refresh running at the same
time, the one that read an older revision does not overwrite the newer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from lockgate.control.state import RouteState
from lockgate.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


class ControlCache:
    def __init__(self, store: Store, declared: dict[str, int], *, refresh_interval_s: float = 0.25) -> None:
        """`declared`: each route's stable version as the configuration declares it, used until (and
        unless) the store holds a state for the route."""
        self._store = store
        self._declared = dict(declared)
        self._states: dict[str, RouteState] = {}
        self._revisions: dict[str, int] = {}
        self.refresh_interval_s = refresh_interval_s
        self.last_refresh: float = 0.0
        self._lock = threading.Lock()

    def state(self, route: str) -> RouteState:
        state = self._states.get(route)
        if state is None:
            state = RouteState(route=route, stable=self._declared[route])
        return state

    def revision(self, route: str) -> int:
        return self._revisions.get(route, 0)

    def refresh(self) -> None:
        try:
            stored = self._store.list_route_states()
        except StoreUnavailable as exc:
            log.debug("route state not refreshed (store unavailable: %s); keeping the last one", exc)
            return
        for route, (revision, body) in stored.items():
            self._take(route, revision, body)
        self.last_refresh = time.time()

    def refresh_route(self, route: str) -> bool:
        """Reads one route now (its change was announced); False when the store could not be read."""
        if route not in self._declared:
            return True
        try:
            stored = self._store.get_route_state(route)
        except StoreUnavailable as exc:
            log.debug("route %s not refreshed (store unavailable: %s); the next poll retries", route, exc)
            return False
        if stored is not None:
            self._take(route, *stored)
        return True

    def _take(self, route: str, revision: int, body: dict[str, Any]) -> None:
        if route not in self._declared:
            return  # a route this configuration does not serve
        try:
            state = RouteState.from_json(body)
        except ValueError as exc:
            log.error("ignoring unreadable state for route %s: %s", route, exc)
            return
        with self._lock:
            if revision >= self._revisions.get(route, 0):
                self._states[route] = state
                self._revisions[route] = revision

    async def run_refresher(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            await asyncio.to_thread(self.refresh)
