"""Trace retention: traces older than their route's `retention_days` (or `tracing.retention_days`)
are deleted, by a sweep that runs where traces are loaded, at start and every few minutes.

Each sweep that deletes anything is one transaction with its audit record ("trace.retention"):
the cutoffs it applied, how many traces it deleted, and where the trace chain now starts, so
`lockgate audit verify` can tell a trace retention deleted from one somebody removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lockgate.audit.chain import AuditRecord
from lockgate.config import LockgateConfig
from lockgate.store import RetentionCutoffs, Store

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 300.0
RETRY_AFTER_FAILURE_S = 30.0
RETENTION_ACTOR = "lockgate:retention"
DAY_S = 86400.0


def retention_cutoffs(config: LockgateConfig, now: float) -> RetentionCutoffs:
    """Per configured route: its own `retention_days`, else the global one. Traces of routes no
    longer configured follow the global setting."""
    default_days = config.tracing.retention_days

    def cutoff(days: int | None) -> float | None:
        return now - days * DAY_S if days is not None else None

    by_route = {
        name: cutoff(route.retention_days if route.retention_days is not None else default_days)
        for name, route in config.routes.items()
    }
    return RetentionCutoffs(by_route, cutoff(default_days))


class RetentionSweeper:
    """Called on every loader tick; sweeps when due (at the first tick, then every `interval_s`)."""

    def __init__(self, store: Store, config: LockgateConfig, *, interval_s: float = SWEEP_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._config = config
        self._interval_s = interval_s
        self._clock = clock
        self._next_due = 0.0

    def __call__(self) -> None:
        now = self._clock()
        if now < self._next_due:
            return
        self._next_due = now + RETRY_AFTER_FAILURE_S  # a failed sweep is tried again soon, not every tick
        self.sweep(now)
        self._next_due = now + self._interval_s

    def sweep(self, now: float | None = None) -> AuditRecord | None:
        record = self._store.expire_traces(
            retention_cutoffs(self._config, self._clock() if now is None else now), actor=RETENTION_ACTOR
        )
        if record is not None:
            log.info("retention deleted %d trace(s) (audit record %d)", record.details["deleted"], record.seq)
        return record
