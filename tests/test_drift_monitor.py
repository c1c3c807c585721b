"""The drift monitor's checks over traces written through the store API, and what /metrics makes of them."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from lockgate.config.loader import parse_config
from lockgate.drift.monitor import DriftMonitor
from lockgate.drift.publish import DriftScoresCollector, drift_collectors
from lockgate.drift.spec import parse_window
from lockgate.settings import Settings
from lockgate.store import SqlStore
from tests.drift_traffic import prompts
from tests.harness import store_at

NOW = time.time()
DAY = 86400.0


def _trace(ts: float, prompt: str) -> dict:
    return {"trace_id": uuid.uuid4().hex, "ts": ts, "route": "echo", "release": "echo@1", "status": 200,
            "outcome": "ok", "latency_ms": 3.0, "prompt_tokens": len(prompt.split()) + 8,
            "completion_tokens": len(prompt.split()) + 1, "guard_action": "allow",
            "guards": {"input": [{"guard": "injection", "action": "allow", "score": 0.01}], "output": []},
            "content_mode": "full", "prompt": [{"role": "user", "content": prompt}], "output": "echo: " + prompt}


def _config(reference: str) -> str:
    return f"""
version: 1
backends:
  up: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  echo:
    serve: v1
    drift: {{reference: "{reference}", window_s: 3600, interval_s: 60}}
    releases:
      v1: {{backend: up, model: ok}}
  quiet:
    serve: v1
    releases:
      v1: {{backend: up, model: ok}}
"""


def _setup(tmp_path: Path, reference: str) -> tuple[DriftMonitor, SqlStore, Settings]:
    settings = Settings(data_dir=tmp_path / "data")
    store = store_at(settings.database_path)
    store.migrate()
    # yesterday: English support questions; the last hour: German ones
    store.insert_traces([_trace(NOW - DAY + i, p) for i, p in enumerate(prompts("support_en", 60, 1))])
    store.insert_traces([_trace(NOW - 1800 + i, p) for i, p in enumerate(prompts("support_de", 60, 2))])
    return DriftMonitor(settings, parse_config(_config(reference), source="test"), store, clock=lambda: NOW), \
        store, settings


def _scrape(collector: DriftScoresCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_a_check_publishes_scores_for_metrics(tmp_path: Path) -> None:
    period = f"since:{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(NOW - 2 * DAY))}," \
             f"until:{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(NOW - DAY / 2))}"
    monitor, store, settings = _setup(tmp_path, period)
    report = monitor.check("echo")
    assert report.n_reference == 60 and report.n_current == 60
    assert {f.name for f in report.drifted} >= {"language", "topic"}

    (collector,) = drift_collectors(settings, parse_config(_config(period), source="test"))
    text = _scrape(collector)
    assert 'lockgate_drift_detected{feature="language",route="echo"} 1.0' in text
    assert 'lockgate_drift_detected{feature="guard.input.injection",route="echo"} 0.0' in text
    assert 'lockgate_drift_threshold{feature="language",route="echo"} 0.1' in text
    checked = re.search(r'^lockgate_drift_checked_timestamp_seconds\{route="echo"\} (\S+)$', text, re.MULTILINE)
    assert checked and float(checked.group(1)) == report.generated_at
    assert 'route="quiet"' not in text

    # A period that is over is read once: traces added to it later do not change the reference.
    store.insert_traces([_trace(NOW - DAY + 100 + i, p) for i, p in enumerate(prompts("support_en", 10, 3))])
    assert monitor.check("echo").n_reference == 60


def test_a_moving_reference_is_read_at_every_check(tmp_path: Path) -> None:
    monitor, store, _ = _setup(tmp_path, "last:2d")
    assert monitor.check("echo").n_reference == 120
    store.insert_traces([_trace(NOW - 2 * 3600 + i, p) for i, p in enumerate(prompts("support_en", 10, 3))])
    assert monitor.check("echo").n_reference == 130


def test_collector_without_a_snapshot_or_with_a_broken_one(tmp_path: Path) -> None:
    collector = DriftScoresCollector(tmp_path / "drift-scores.json", {"echo"})
    assert "lockgate_drift" not in _scrape(collector)
    (tmp_path / "drift-scores.json").write_text("{not json")
    assert "lockgate_drift" not in _scrape(collector)


def test_no_collector_without_drift_configured(tmp_path: Path) -> None:
    text = _config("last:1d").replace('    drift: {reference: "last:1d", window_s: 3600, interval_s: 60}\n', "")
    assert drift_collectors(Settings(data_dir=tmp_path), parse_config(text, source="test")) == []


def test_fixed_and_moving_windows() -> None:
    assert parse_window("suite:x.yaml").fixed(NOW)
    assert parse_window("since:2020-01-01,until:2020-02-01").fixed(NOW)
    assert not parse_window("since:2020-01-01").fixed(NOW)
    assert not parse_window("last:1h").fixed(NOW)
