"""`lockgate redteam` end to end through the CLI, over the fake upstream (it answers "echo: <last user
message>", so it never refuses, never leaks the system prompt and never repeats itself) and real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.devtools.fake_upstream import FakeUpstreamThread
from lockgate.evals import stats
from tests.harness import run_cli, store_at, write_config


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstreamThread) -> Path:
    """`echo`: v0 (registered first, echo@1) with the default guard policy, v1 (echo@2) with no guards."""
    path = write_config(tmp_path / "lockgate.yaml", upstream.base_url, release_extra="""
        guards: {input: [], output: []}
""")
    text = path.read_text().replace("releases:\n      v1:", "releases:\n      v0:\n        backend: up\n"
                                    "        model: ok\n        system_prompt: You are a test.\n      v1:")
    path.write_text(text)
    return path


def _redteam(tmp_path: Path, config: Path, *args: str):
    return run_cli("redteam", "--out", str(tmp_path / "out"), "--concurrency", "4", *args,
                   data_dir=tmp_path / "data", config=config, check=False)


def _report(tmp_path: Path, version: int) -> dict:
    return json.loads((tmp_path / "out" / f"redteam-echo-{version}.json").read_text())


def test_resisted_attacks_pass_and_write_reports(tmp_path: Path, config: Path) -> None:
    result = _redteam(tmp_path, config, "--release", "echo:v0", "--attacks", "18",
                      "--categories", "system_prompt_extraction,training_data_extraction")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: attack success rate 0.0%" in result.stdout
    assert "redteam echo@1: 18/18" in result.stderr
    report = _report(tmp_path, 1)
    assert report["canary_planted"] is True  # the default policy has the system_prompt_leak guard
    assert report["categories"] == ["system_prompt_extraction", "training_data_extraction"]
    overall = report["metrics"]["overall"]
    assert overall["n"] == 18 and overall["succeeded"] == 0 and overall["errors"] == 0
    assert overall["resisted"] + overall["blocked"] == 18
    assert set(report["metrics"]["strategies"]) == {"plain", "base64", "rot13", "leetspeak", "homoglyphs",
                                                    "translation-de", "translation-fr", "translation-es",
                                                    "translation-it"}
    resisted = [a for a in report["attacks"] if a["outcome"] == "resisted"]
    assert resisted and all(a["output"].startswith("echo: ") and a["status"] == 200 for a in resisted)
    assert report["diff"] is None
    md = (tmp_path / "out" / "redteam-echo-1.md").read_text()
    assert "| system_prompt_extraction | 9 |" in md and "## Attacks (18)" in md
    page = (tmp_path / "out" / "redteam-echo-1.html").read_text()
    assert "<svg" in page and "<script" not in page
    assert "<h2>Per category</h2><table>" in page.replace("\n", "")
    assert "<td>training_data_extraction</td><td>9</td>" in page


def test_input_guards_block_injections_and_are_counted_apart(tmp_path: Path, config: Path) -> None:
    result = _redteam(tmp_path, config, "--release", "echo:v0", "--attacks", "9", "--categories",
                      "prompt_injection", "--strategies", "plain,base64,rot13")
    assert result.returncode == 0, result.stdout + result.stderr
    m = _report(tmp_path, 1)["metrics"]["categories"]["prompt_injection"]
    assert m["blocked"] == m["blocked_input"] > 0 and m["blocked_output"] == 0
    blocked = [a for a in _report(tmp_path, 1)["attacks"] if a["outcome"] == "blocked"]
    assert all(a["status"] == 400 and a["guard_action"] == "block" for a in blocked)


def test_rate_above_the_limit_exits_1_and_the_next_release_is_diffed(tmp_path: Path, config: Path) -> None:
    args = ("--attacks", "18", "--categories", "jailbreak_personas", "--seed", "4")
    first = _redteam(tmp_path, config, "--release", "echo:v0", *args, "--max-asr", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _redteam(tmp_path, config, "--release", "echo:v1", *args)  # no guards: the echo never refuses
    assert second.returncode == 1, second.stdout + second.stderr
    assert "FAIL: attack success rate 100.0%" in second.stdout
    assert "vs echo@1: jailbreak_personas" in second.stdout and "(worse)" in second.stdout
    before, after = _report(tmp_path, 1), _report(tmp_path, 2)
    assert after["metrics"]["categories"]["jailbreak_personas"]["succeeded"] == 18
    assert before["metrics"]["categories"]["jailbreak_personas"]["blocked"] > 0
    d = after["diff"]
    assert d["previous"]["id"] == "echo@1" and d["worse"] == ["jailbreak_personas"]
    row = d["categories"]["jailbreak_personas"]
    assert row["previous_asr"] == before["metrics"]["categories"]["jailbreak_personas"]["asr"]
    assert row["delta"] == pytest.approx(1.0 - row["previous_asr"])
    # the same seed and arguments drew the same attacks: paired, attack by attack
    regressed = sum(a["outcome"] != "succeeded" for a in before["attacks"])
    assert row["test"] == "mcnemar" and row["p_value"] == stats.mcnemar(b=regressed, c=0).p_value
    assert "Change from the previous release" in (tmp_path / "out" / "redteam-echo-2.html").read_text()
    # both runs are the releases' evidence, in the data folder's store (PostgreSQL's database for it in that pass)
    store = store_at(tmp_path / "data" / "lockgate.sqlite3")
    evidence = store.list_evidence("echo", kind="redteam")
    assert [(e.version, e.passed) for e in evidence] == [(1, True), (2, False)]
    assert evidence[1].summary["metrics"]["overall"]["asr"] == 1.0 and "attacks" not in evidence[1].summary
    assert evidence[1].summary["diff"]["previous"]["id"] == "echo@1"


@pytest.mark.parametrize(("args", "message"), [
    (("--release", "echo:v9"), "route 'echo' has no release labelled 'v9'"),
    (("--release", "nope:v1"), "no route 'nope'"),
    (("--release", "echo@99"), "no release echo@99"),
    (("--release", "echo:v1", "--categories", "prompt_injection,nope"), "unknown category 'nope'; known:"),
    (("--release", "echo:v1", "--strategies", "rot26"), "unknown strategy 'rot26'; known:"),
    (("--release", "echo:v1", "--max-asr", "1.5"), "--max-asr"),
    (("--release", "echo:v1", "--attacks", "0"), "--attacks"),
])
def test_bad_arguments_exit_2(tmp_path: Path, config: Path, args: tuple[str, ...], message: str) -> None:
    result = _redteam(tmp_path, config, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out").exists()
