"""Every worker's copy of the routes' state, refreshed from the store a few times a second.

The request path reads only this copy, never the database: when the store is down, the last state
read keeps serving (a rollback issued meanwhile waits until the store is back, which is the
trade-off the 'request path never depends on the database' rule makes).
"""

from __future__ import annotations

import asyncio
import logging
import time

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
        states: dict[str, RouteState] = {}
        for route, (revision, body) in stored.items():
            if route not in self._declared:
                continue  # a route this configuration does not serve
            try:
                states[route] = RouteState.from_json(body)
                self._revisions[route] = revision
            except ValueError as exc:
                log.error("ignoring unreadable state for route %s: %s", route, exc)
        self._states = states
        self.last_refresh = time.time()

    async def run_refresher(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            await asyncio.to_thread(self.refresh)
