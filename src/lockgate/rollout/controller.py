"""Runs every route's rollout forward: a thread in the process that loads traces into the store.

Each tick reads a route's state, lets the state machine judge it against the traces loaded so far,
and writes the result back with compare-and-set. With several replicas each may run a controller:
compare-and-set makes sure only one of them records any given transition.
"""

from __future__ import annotations

import logging
import threading
import time

from lockgate.control.commands import update_state
from lockgate.control.state import RouteState
from lockgate.observe import metrics
from lockgate.rollout import machine
from lockgate.rollout.analysis import Analyzer
from lockgate.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


class RolloutController:
    def __init__(self, store: Store, routes: list[str], *, interval_s: float = 0.25,
                 analyzer: Analyzer | None = None) -> None:
        self.store = store
        self.routes = routes
        self.interval_s = interval_s
        self.analyzer = analyzer or Analyzer(store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: float | None = None) -> dict[str, RouteState]:
        states: dict[str, RouteState] = {}
        for route in self.routes:
            if self.store.get_route_state(route) is None:
                continue
            state = update_state(self.store, route, lambda s: machine.tick(_present(s), self.analyzer, now),
                                 actor="controller")
            rollout = state.active_rollout()
            metrics.ROLLOUT_WEIGHT.labels(route=route).set(rollout.canary_weight if rollout else 0.0)
            metrics.ROLLOUT_SHADOW.labels(route=route).set(rollout.shadow_percent if rollout else 0.0)
            states[route] = state
        return states

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lockgate-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick(time.time())
            except StoreUnavailable as exc:
                log.warning("rollouts not advanced this tick (store unavailable: %s)", exc)
            except Exception:  # noqa: BLE001 - the controller must outlive any one bad tick
                log.exception("rollout controller tick failed")


def _present(state: RouteState | None) -> RouteState:
    assert state is not None, "ticked only for routes with a stored state"
    return state
