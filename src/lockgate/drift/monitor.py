"""The periodic drift check that `lockgate serve` runs for every route with `drift:` in lockgate.yaml.

One monitor per deployment of one machine: `lockgate serve` starts it in the supervisor (several
workers) or beside the lone worker, the same places the trace loader runs, so the scores are computed
once and the embedding model is loaded once, off the workers that answer requests. Each check
compares the route's last `window_s` seconds of traffic with its reference, logs drift as a warning
and writes the scores for /metrics (publish.py). A reference that does not move (a suite, a fixed
period) is loaded and embedded once and reused by every check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lockgate.config import LockgateConfig
from lockgate.config.schema import DriftConfig
from lockgate.drift.analysis import DriftReport, PromptMemo, WindowSample, compare
from lockgate.drift.publish import route_snapshot, snapshot_path, write_snapshot
from lockgate.drift.spec import WindowError, WindowSpec, parse_window
from lockgate.drift.stats import DriftSettings
from lockgate.drift.windows import load_window
from lockgate.settings import Settings
from lockgate.store import Store

log = logging.getLogger(__name__)


def drift_settings(config: DriftConfig) -> DriftSettings:
    return DriftSettings(alpha=config.alpha, min_samples=config.min_samples)


class DriftMonitor:
    def __init__(self, settings: Settings, config: LockgateConfig, store: Store, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.path = snapshot_path(settings)
        base_dir = settings.config_path.parent if settings.config_path else Path.cwd()
        self.routes: dict[str, tuple[DriftConfig, WindowSpec]] = {
            name: (route.drift, parse_window(route.drift.reference, base_dir=base_dir))
            for name, route in config.routes.items() if route.drift is not None
        }
        for name, (_, spec) in self.routes.items():
            if spec.suite is not None and not spec.suite.is_file():
                raise WindowError(f"routes.{name}.drift.reference: there is no suite file {spec.suite} "
                                  "(a relative path starts at the configuration file's folder)")
        self._references: dict[str, WindowSample] = {}
        # Windows that move overlap from one check to the next: their prompts' work is carried over.
        self._memos = {name: PromptMemo() for name in self.routes}
        self._snapshot: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, route: str) -> DriftReport:
        """One check of one route, now; its scores are published."""
        drift, reference_spec = self.routes[route]
        now = self.clock()
        reference = self._references.get(route)
        if reference is None:
            reference = load_window(reference_spec, route=route, store=self.store, now=now,
                                    memo=self._memos[route])
            if reference_spec.fixed(now):  # the same requests at every check: load and embed them once
                self._references[route] = reference
        current_spec = WindowSpec(f"last:{drift.window_s:g}s", last_s=drift.window_s)
        current = load_window(current_spec, route=route, store=self.store, now=now, memo=self._memos[route])
        report = compare(route, reference, current, drift_settings(drift))
        # Logged before the scores are published: whoever sees a score on /metrics finds its log line too.
        if report.drifted:
            log.warning("drift on route %s (%s vs %s): %s", route, current.description, reference.description,
                        ", ".join(f"{f.name} {f.test.score:.3f}" for f in report.drifted if f.test))
        self._snapshot[route] = route_snapshot(report)
        write_snapshot(self.path, self._snapshot)
        return report

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # scores of an earlier run (maybe another config) are not ours
        self._thread = threading.Thread(target=self._run, name="lockgate-drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        due = dict.fromkeys(self.routes, 0.0)  # the first check of each route right away
        while not self._stop.is_set():
            now = time.monotonic()
            for route, at in due.items():
                if at <= now and not self._stop.is_set():
                    try:
                        self.check(route)
                    except Exception as exc:  # noqa: BLE001 - a failed check must not end the monitor
                        log.error("drift check of route %s failed: %s", route, exc)
                    due[route] = time.monotonic() + self.routes[route][0].interval_s
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()))


def start_drift_monitor(settings: Settings, config: LockgateConfig, store: Store) -> DriftMonitor | None:
    """Started by `lockgate serve` when a route has `drift:`; None otherwise."""
    if not any(route.drift is not None for route in config.routes.values()):
        return None
    monitor = DriftMonitor(settings, config, store)
    monitor.start()
    log.info("drift monitor: checking %s", ", ".join(sorted(monitor.routes)))
    return monitor
