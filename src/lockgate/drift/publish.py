"""Drift scores on /metrics, from one process to every worker.

Why a file: `lockgate serve` runs the drift monitor once (in the supervisor, or in the lone worker),
but /metrics is answered by whichever worker takes the scrape. The supervisor's own prometheus_client
values would not reach the workers' multiprocess files (the mode is fixed when prometheus_client is
imported, before the supervisor knows how many workers it will start), so the monitor writes its
latest scores to one small JSON file, atomically, and each worker turns that file into gauges at
scrape time with the collector below. A scrape costs one read of a file of a few kilobytes.

    lockgate_drift_score{route,feature}        the feature's effect size (see lockgate.drift.stats)
    lockgate_drift_threshold{route,feature}    the score at which it counts as drift
    lockgate_drift_detected{route,feature}     1 when the last check called the feature drifted
    lockgate_drift_checked_timestamp_seconds{route}   when that check ran (a stale value means no checks)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from lockgate.config import LockgateConfig
from lockgate.settings import Settings

log = logging.getLogger(__name__)
SNAPSHOT_NAME = "drift-scores.json"


def snapshot_path(settings: Settings) -> Path:
    return settings.data_dir / SNAPSHOT_NAME


def write_snapshot(path: Path, routes: dict[str, dict[str, Any]]) -> None:
    """Replace the file in one rename, so a scrape never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"routes": routes}, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def route_snapshot(report: Any) -> dict[str, Any]:
    """What /metrics needs of one DriftReport: each judged feature's score, threshold and verdict."""
    features = {}
    for f in report.features:
        if f.test is not None and f.test.score == f.test.score:  # judged (the score is not NaN)
            features[f.name] = {"score": f.test.score, "threshold": f.test.threshold,
                                "drift": int(f.verdict.value == "drift")}
    return {"checked_at": report.generated_at, "verdict": report.verdict.value, "features": features}


class DriftScoresCollector:
    """A prometheus_client collector reading the monitor's snapshot file at each scrape."""

    def __init__(self, path: Path, routes: set[str]) -> None:
        self.path = path
        self.routes = routes  # only routes that still have `drift:` configured

    def describe(self) -> list[Metric]:
        return []  # names are known only at scrape time; do not read the file on registration

    def collect(self) -> Iterator[Metric]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read drift scores from %s: %s", self.path, exc)
            return
        score = GaugeMetricFamily("lockgate_drift_score", "Drift effect size per route and feature.",
                                  labels=["route", "feature"])
        threshold = GaugeMetricFamily("lockgate_drift_threshold", "Score at which a feature counts as drifted.",
                                      labels=["route", "feature"])
        detected = GaugeMetricFamily("lockgate_drift_detected", "1 when the last drift check flagged the feature.",
                                     labels=["route", "feature"])
        checked = GaugeMetricFamily("lockgate_drift_checked_timestamp_seconds", "When the last drift check ran.",
                                    labels=["route"])
        for route, entry in sorted((data.get("routes") or {}).items()):
            if route not in self.routes:
                continue
            checked.add_metric([route], float(entry.get("checked_at") or 0))
            for feature, values in sorted((entry.get("features") or {}).items()):
                score.add_metric([route, feature], float(values["score"]))
                threshold.add_metric([route, feature], float(values["threshold"]))
                detected.add_metric([route, feature], float(values["drift"]))
        yield from (score, threshold, detected, checked)


def drift_collectors(settings: Settings, config: LockgateConfig) -> list[DriftScoresCollector]:
    """The collectors a serving process adds to /metrics: none unless a route has `drift:` configured."""
    routes = {name for name, route in config.routes.items() if route.drift is not None}
    return [DriftScoresCollector(snapshot_path(settings), routes)] if routes else []
