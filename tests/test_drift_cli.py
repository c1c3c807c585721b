"""`lockgate drift` end to end: traffic through a real gateway over the fake upstream, traces in the
store, the CLI comparing windows of them; and the serving process's periodic check on /metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from tests.drift_traffic import prompts
from tests.harness import Gateway, free_port, run_cli, store_at, write_config

N = 60  # requests per window



def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _send(client: httpx.Client, texts: list[str]) -> None:
    for text in texts:
        resp = client.post("/v1/chat/completions", json={"model": "echo",
                                                          "messages": [{"role": "user", "content": text}]})
        assert resp.status_code == 200, resp.text


def _wait_for_traces(data_dir: Path, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with closing(store_at(data_dir / "lockgate.sqlite3")) as store:
            if store.count_traces() >= count:
                return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} traces in the store after {timeout_s}s")


@dataclass
class Traffic:
    config: Path
    data_dir: Path
    marks: list[float]  # window boundaries: english | more english | german | cooking

    def window(self, i: int) -> str:
        return f"since:{_iso(self.marks[i])},until:{_iso(self.marks[i + 1])}"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, upstream_url: str) -> Iterator[Traffic]:
    root = tmp_path_factory.mktemp("drift")
    config = write_config(root / "lockgate.yaml", upstream_url, server_extra="  require_api_key: false")
    gateway = Gateway(root / "data", config, free_port()).start()
    marks = [time.time()]
    try:
        with httpx.Client(base_url=gateway.api_url.removesuffix("/v1"), timeout=30) as client:
            for kind, seed in (("support_en", 1), ("support_en", 2), ("support_de", 3), ("cooking_en", 4)):
                _send(client, prompts(kind, N, seed))
                time.sleep(0.05)
                marks.append(time.time())
        _wait_for_traces(root / "data", 4 * N)
    finally:
        gateway.stop()
    yield Traffic(config, root / "data", marks)


def _drift(traffic: Traffic, tmp_path: Path, *args: str):
    return run_cli("drift", "--route", "echo", "--out", str(tmp_path / "out"), *args,
                   data_dir=traffic.data_dir, config=traffic.config, check=False)


FEATURES = {"prompt_chars", "prompt_tokens", "output_chars", "completion_tokens", "refusal", "guard_action",
            "language", "topic", "confidence"}
VERDICTS = ("NO DRIFT", "INSUFFICIENT DATA", "UNAVAILABLE", "DRIFT")


def _rows(stdout: str) -> dict[str, str]:
    """FEATURE -> VERDICT from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name in FEATURES or name.startswith("guard."):
            rows[name] = next(v for v in VERDICTS if line.endswith(v))
    return rows


def test_same_distribution_is_not_drift(traffic: Traffic, tmp_path: Path) -> None:
    result = _drift(traffic, tmp_path, "--reference", traffic.window(0), "--current", traffic.window(1))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert {"prompt_chars", "output_chars", "prompt_tokens", "language", "topic", "refusal"} <= rows.keys()
    assert set(rows.values()) == {"NO DRIFT"}, result.stdout
    assert "verdict: NO DRIFT" in result.stdout
    assert f"{N} requests" in result.stdout


def test_other_language_is_drift(traffic: Traffic, tmp_path: Path) -> None:
    result = _drift(traffic, tmp_path, "--reference", traffic.window(0), "--current", traffic.window(2))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert rows["language"] == "DRIFT" and rows["topic"] == "DRIFT", result.stdout
    assert "verdict: DRIFT" in result.stdout
    report = json.loads(next((tmp_path / "out").glob("drift-echo-*.json")).read_text())
    language = next(f for f in report["features"] if f["name"] == "language")
    assert language["verdict"] == "drift" and language["score"] > language["threshold"]
    assert language["plot"]["categories"][:2] in (["en", "de"], ["de", "en"])
    page = next((tmp_path / "out").glob("drift-echo-*.html")).read_text()
    assert page.count("<svg") >= 5 and "<script" not in page and "language" in page


def test_other_topic_in_the_same_language_is_drift(traffic: Traffic, tmp_path: Path) -> None:
    result = _drift(traffic, tmp_path, "--reference", traffic.window(0), "--current", traffic.window(3))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert rows["topic"] == "DRIFT" and rows["language"] == "NO DRIFT", result.stdout


def test_suite_as_the_reference(traffic: Traffic, tmp_path: Path) -> None:
    suite = {"name": "support", "version": 1, "route": "echo", "risk": "low",
             "cases": [{"id": f"c{i}", "messages": [{"role": "user", "content": p}], "assert": [{"type": "is-json"}]}
                       for i, p in enumerate(prompts("support_en", N, 9))]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    same = _drift(traffic, tmp_path, "--reference", f"suite:{path}", "--current", traffic.window(1))
    assert same.returncode == 0, same.stdout + same.stderr
    # a suite has prompts only: the rest is listed as not compared, in one line
    assert "output_chars" not in _rows(same.stdout) and "topic" in _rows(same.stdout)
    assert re.search(r"not compared, not recorded in the reference window: .*output_chars", same.stdout)
    shifted = _drift(traffic, tmp_path, "--reference", f"suite:{path}", "--current", traffic.window(2))
    assert shifted.returncode == 1 and _rows(shifted.stdout)["language"] == "DRIFT", shifted.stdout


def test_psi_effect_and_no_topic(traffic: Traffic, tmp_path: Path) -> None:
    result = _drift(traffic, tmp_path, "--reference", traffic.window(0), "--current", traffic.window(2),
                    "--effect", "psi", "--no-topic")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "psi" in result.stdout and "topic" not in _rows(result.stdout)


@pytest.mark.parametrize(("args", "message"), [
    (("--reference", "yesterday", "--current", "last:1h"), "cannot read the window 'yesterday'"),
    (("--reference", "last:1h", "--current", "suite:x.yaml"), "the current window must be traffic"),
    (("--reference", "last:5 minutes"), "cannot read the duration"),
    (("--reference", "since:2025-13-01"), "cannot read the time"),
    (("--reference", "since:2025-06-02,until:2025-06-01"), "ends before it starts"),
    (("--reference", "suite:/nonexistent/suite.yaml"), "cannot read the suite file"),
    (("--current", "last:1h"), "give --reference"),
])
def test_bad_windows_exit_2_with_what_to_write(traffic: Traffic, tmp_path: Path, args: tuple[str, ...],
                                               message: str) -> None:
    result = _drift(traffic, tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_unknown_route_and_empty_windows(traffic: Traffic, tmp_path: Path) -> None:
    unknown = run_cli("drift", "--route", "nope", "--reference", "last:1h", data_dir=traffic.data_dir,
                      config=traffic.config, check=False)
    assert unknown.returncode == 2 and "no route 'nope'" in unknown.stderr and "echo" in unknown.stderr
    empty = _drift(traffic, tmp_path, "--reference", "since:2001-01-01,until:2001-01-02", "--current", "last:1h")
    assert empty.returncode == 2 and "no feature has 30 values in both windows" in empty.stderr


# -- the periodic check of `lockgate serve` ------------------------------------------------------------


def _metric(text: str, name: str, feature: str) -> float | None:
    match = re.search(rf'^{name}{{route="echo",feature="{feature}"}} (\S+)$', text, re.MULTILINE) or re.search(
        rf'^{name}{{feature="{feature}",route="echo"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("workers", [1, 2])  # the monitor beside a lone worker, or in the supervisor
def test_serve_publishes_drift_scores_on_metrics(tmp_path: Path, upstream_url: str, workers: int) -> None:
    suite = {"name": "support", "version": 1, "route": "echo", "risk": "low",
             "cases": [{"id": f"c{i}", "messages": [{"role": "user", "content": p}], "assert": [{"type": "is-json"}]}
                       for i, p in enumerate(prompts("support_en", 40, 5))]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    drift = ("    drift:\n      reference: suite:suite.yaml\n      window_s: 3600\n      interval_s: 1\n"
             "      min_samples: 20")
    config = write_config(tmp_path / "lockgate.yaml", upstream_url, server_extra="  require_api_key: false",
                          route_extra=drift)
    gateway = Gateway(tmp_path / "data", config, free_port(), workers=workers).start()
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            _send(client, prompts("support_de", 40, 6))
            deadline = time.monotonic() + 300  # the first check loads both models; this machine may be busy
            text = ""
            while time.monotonic() < deadline:
                text = client.get("/metrics").text
                if _metric(text, "lockgate_drift_detected", "language") == 1.0:
                    break
                time.sleep(0.5)
            assert _metric(text, "lockgate_drift_detected", "language") == 1.0, text[-3000:]
            assert _metric(text, "lockgate_drift_score", "language") > 0.5
            assert _metric(text, "lockgate_drift_threshold", "language") == 0.1
            assert _metric(text, "lockgate_drift_detected", "topic") == 1.0
            assert re.search(r'^lockgate_drift_checked_timestamp_seconds\{route="echo"\} \S+$', text, re.MULTILINE)
        assert "drift on route echo" in gateway.logs()
    finally:
        gateway.stop()
    # The CLI takes the route's configured reference (the suite path is relative to lockgate.yaml) and window.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("drift", "--route", "echo", "--no-topic", "--out", str(elsewhere),
                     data_dir=tmp_path / "data", config=config, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"suite support v1 ({tmp_path / 'suite.yaml'})" in result.stdout and "last:3600s" in result.stdout
    assert _rows(result.stdout)["language"] == "DRIFT"


def test_bad_drift_reference_is_a_config_error(tmp_path: Path, upstream_url: str) -> None:
    config = write_config(tmp_path / "lockgate.yaml", upstream_url,
                          route_extra="    drift:\n      reference: yesterday")
    result = run_cli("release", "list", data_dir=tmp_path / "data", config=config, check=False)
    assert result.returncode == 2
    assert "routes.echo.drift.reference" in result.stderr and "cannot read the window 'yesterday'" in result.stderr
