"""`lockgate eval` end to end through the CLI, over the fake upstream (it answers "echo: <last user message>")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.harness import run_cli, write_config


@pytest.fixture
def config(tmp_path: Path, upstream_url: str) -> Path:
    path = write_config(tmp_path / "lockgate.yaml", upstream_url)
    # a second release of the same route, so there is a baseline to compare with
    # (registered in order: v0 is echo@1, v1 echo@2) and a `broken` one whose upstream answers HTTP 500
    text = path.read_text().replace("releases:\n      v1:", "releases:\n      v0:\n        backend: up\n"
                                    "        model: ok\n        system_prompt: You are an older test.\n      v1:")
    text += "      broken:\n        backend: up\n        model: fault-500\n        system_prompt: x\n"
    path.write_text(text)
    return path


def write_suite(path: Path, *, passing: int, failing: int, pass_rate: float = 0.9, risk: str = "low") -> Path:
    cases = []
    for i in range(passing):
        cases.append({"id": f"ok-{i}", "tags": ["greeting"], "label": "benign",
                      "messages": [{"role": "user", "content": f"hello {i}"}],
                      "assert": [{"type": "icontains", "value": f"echo: hello {i}"}]})
    for i in range(failing):
        cases.append({"id": f"bad-{i}", "tags": ["geography"], "expected": "Paris",
                      "messages": [{"role": "user", "content": f"Capital of France? ({i})"}],
                      "assert": [{"type": "icontains", "value": "Paris"}]})
    suite = {"name": "echo-suite", "version": 1, "route": "echo", "risk": risk,
             "thresholds": {"pass_rate": pass_rate, "max_error_rate": 0.05, "max_p95_latency_ms": 30000,
                            "max_refusal_rate_benign": 0.2},
             "defaults": [{"type": "latency", "value": 30000}], "cases": cases}
    path.write_text(yaml.safe_dump(suite))
    return path


def _eval(tmp_path: Path, config: Path, suite: Path, *args: str):
    return run_cli("eval", str(suite), "--out", str(tmp_path / "out"), "--concurrency", "4", *args,
                   data_dir=tmp_path / "data", config=config, check=False)


def test_pass_writes_reports(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=48, failing=2, pass_rate=0.9)
    result = _eval(tmp_path, config, suite, "--release", "echo:v1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS" in result.stdout
    assert "eval echo@" in result.stderr and "50/50" in result.stderr
    out = tmp_path / "out"
    stems = sorted(p.name for p in out.iterdir())
    assert len(stems) == 3 and {Path(s).suffix for s in stems} == {".json", ".md", ".html"}
    report = json.loads(next(out.glob("eval-echo-*.json")).read_text())
    assert report["metrics"]["n"] == 50 and report["metrics"]["passed"] == 48
    assert report["metrics"]["refusal_rate_benign"] == 0.0
    low, high = report["metrics"]["pass_rate_ci95"]
    assert low < 0.96 < high
    assert report["slices"]["greeting"]["pass_rate"] == 1.0
    assert report["slices"]["geography"]["pass_rate"] == 0.0
    failed = [c for c in report["cases"] if not c["passed"]]
    assert {c["id"] for c in failed} == {"bad-0", "bad-1"}
    assert failed[0]["output"].startswith("echo: Capital of France?") and failed[0]["status"] == 200
    md = next(out.glob("*.md")).read_text()
    assert "bad-0" in md and "Paris" in md
    page = next(out.glob("*.html")).read_text()
    assert "<svg" in page and "<script" not in page and "geography" in page


def test_pass_rate_below_threshold_exits_1(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=30, failing=20, pass_rate=0.9)
    result = _eval(tmp_path, config, suite, "--release", "echo:v1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL pass_rate" in result.stdout


def test_too_few_cases_exits_2(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=10, failing=0)
    result = _eval(tmp_path, config, suite, "--release", "echo:v1")
    assert result.returncode == 2
    assert "risk level 'low' needs at least 50" in result.stderr


def test_unknown_release_exits_2(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=50, failing=0)
    for ref in ("echo:v9", "echo@99", "nope:v1"):
        result = _eval(tmp_path, config, suite, "--release", ref)
        assert result.returncode == 2, (ref, result.stdout, result.stderr)
        assert "error:" in result.stderr


def test_baseline_comparison(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=50, failing=0, pass_rate=0.5)
    result = _eval(tmp_path, config, suite, "--release", "echo@2", "--baseline", "echo:v0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "McNemar" in result.stdout
    report = json.loads((tmp_path / "out" / "eval-echo-2.json").read_text())
    assert report["release"]["label"] == "v1" and report["baseline"]["label"] == "v0"
    comparison = report["comparison"]
    assert comparison["paired_cases"] == 50 and comparison["regressions_b"] == 0
    assert comparison["significant_regression"] is False
    assert "McNemar" in (tmp_path / "out" / "eval-echo-2.md").read_text()


def test_significant_regression_is_marked(tmp_path: Path, config: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", passing=50, failing=0, pass_rate=0.0)
    suite_data = yaml.safe_load(suite.read_text())
    suite_data["thresholds"] = {"pass_rate": 0.0}  # only the comparison can fail this run
    suite.write_text(yaml.safe_dump(suite_data))
    result = _eval(tmp_path, config, suite, "--release", "echo:broken", "--baseline", "echo:v1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL no_significant_regression" in result.stdout
    report = json.loads(next((tmp_path / "out").glob("eval-echo-*.json")).read_text())
    assert report["comparison"]["significant_regression"] is True
    assert report["comparison"]["regressions_b"] == 50
    assert report["metrics"]["error_rate"] == 1.0


# -- exit 2: the evaluation could not run --------------------------------------------------------


def test_missing_suite_file_exits_2(tmp_path: Path, config: Path) -> None:
    result = _eval(tmp_path, config, tmp_path / "no-such-suite.yaml", "--release", "echo:v1")
    assert result.returncode == 2
    assert "no-such-suite.yaml" in result.stderr and "cannot read the suite file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_configuration_exits_2(tmp_path: Path, upstream_url: str) -> None:
    config = write_config(tmp_path / "lockgate.yaml", upstream_url, release_extra="""
        retrieval:
          knowledge: kb/missing.md
""")
    suite = write_suite(tmp_path / "suite.yaml", passing=50, failing=0)
    result = _eval(tmp_path, config, suite, "--release", "echo:v1")
    assert result.returncode == 2
    assert "retrieval.knowledge" in result.stderr and str(tmp_path / "kb" / "missing.md") in result.stderr


def test_backend_that_cannot_load_exits_2(tmp_path: Path, upstream_url: str) -> None:
    config = write_config(tmp_path / "lockgate.yaml", upstream_url, backend_extra=f"""
  local:
    kind: llama_cpp
    model_file: {tmp_path / 'missing.gguf'}
""", release_extra="""
      local:
        backend: local
        model: missing
""")
    suite = write_suite(tmp_path / "suite.yaml", passing=50, failing=0)
    result = _eval(tmp_path, config, suite, "--release", "echo:local")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "backend 'local'" in result.stderr and "missing.gguf" in result.stderr
