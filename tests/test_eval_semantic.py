"""`semantic-similarity` assertions in `lockgate eval`, end to end through the CLI over the fake upstream
(which answers "echo: <last user message>"), judged by the numpy all-MiniLM-L6-v2 encoder."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lockgate.evals.runner import similarity_for
from lockgate.evals.suite import load_suite
from tests.harness import run_cli, write_config

# (prompt the fake echoes back, a paraphrase of it, an unrelated text)
PAIRS = [
    ("How do I reset my password?", "I forgot my password and need to change it.", "The train leaves at noon."),
    ("A man is playing a guitar on stage.", "Someone performs guitar music for an audience.",
     "Quarterly revenue grew by twelve percent."),
    ("Cancel my subscription, please.", "I would like to cancel my membership.", "Volcanoes erupt lava."),
]



def write_suite(path: Path, *, with_similarity: bool = True) -> Path:
    cases = []
    for i in range(50):
        prompt, paraphrase, unrelated = PAIRS[i % len(PAIRS)]
        asserts = [{"type": "semantic-similarity", "value": paraphrase, "threshold": 0.5},
                   {"type": "not-semantic-similarity", "value": unrelated, "threshold": 0.5}]
        if i % 10 == 9:  # one case in ten expects the unrelated text, and must fail
            asserts = [{"type": "semantic-similarity", "value": unrelated, "threshold": 0.5}]
        if not with_similarity:
            asserts = [{"type": "icontains", "value": "echo"}]
        cases.append({"id": f"c{i}", "tags": ["semantic"], "messages": [{"role": "user", "content": prompt}],
                      "assert": asserts})
    suite = {"name": "semantic-suite", "version": 1, "route": "echo", "risk": "low",
             "thresholds": {"pass_rate": 0.85}, "cases": cases}
    path.write_text(yaml.safe_dump(suite))
    return path


def test_semantic_similarity_is_judged_by_the_embedding_model(tmp_path: Path, upstream_url: str) -> None:
    config = write_config(tmp_path / "lockgate.yaml", upstream_url)
    suite = write_suite(tmp_path / "suite.yaml")
    result = run_cli("eval", str(suite), "--release", "echo:v1", "--out", str(tmp_path / "out"),
                     "--concurrency", "4", data_dir=tmp_path / "data", config=config, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(next((tmp_path / "out").glob("eval-echo-*.json")).read_text())
    assert report["metrics"]["n"] == 50 and report["metrics"]["passed"] == 45
    failed = {c["id"] for c in report["cases"] if not c["passed"]}
    assert failed == {f"c{i}" for i in range(9, 50, 10)}
    first = next(c for c in report["cases"] if c["id"] == "c0")
    similar, dissimilar = first["assertions"]
    assert similar["passed"] and similar["error"] is None and similar["reason"].startswith(
        "semantic-similarity passed: similarity 0.")
    assert dissimilar["passed"] and "< threshold 0.5" in dissimilar["reason"]
    wrong = next(c for c in report["cases"] if c["id"] == "c9")["assertions"][0]
    assert not wrong["passed"] and wrong["error"] is None and "< threshold 0.5" in wrong["reason"]


def test_model_loaded_only_for_suites_that_need_it(tmp_path: Path) -> None:
    assert similarity_for(load_suite(write_suite(tmp_path / "plain.yaml", with_similarity=False))) is None
    similarity = similarity_for(load_suite(write_suite(tmp_path / "semantic.yaml")))
    assert similarity is not None
    assert similarity(*PAIRS[0][:2]) > 0.5 > similarity(PAIRS[0][0], PAIRS[0][2])


def test_demo_suite_semantic_assertions_quote_the_knowledge() -> None:
    """Each demo semantic-similarity assertion holds the case's context line, and its threshold lets a
    correct answer in other words pass and a non-answer fail."""
    from lockgate.embeddings.minilm import similarity

    suite = load_suite(Path(__file__).resolve().parents[1] / "src" / "lockgate" / "config" / "demo_suite.yaml")
    semantic = [(c, a) for c in suite.cases for a in c.asserts if a.type == "semantic-similarity"]
    assert len(semantic) >= 3
    for case, assertion in semantic:
        assert case.context and assertion.value == case.context[0], case.id
        assert assertion.threshold is not None
        assert similarity("I'm sorry, I don't know.", assertion.value) < assertion.threshold, case.id
    refund = next(a for c, a in semantic if c.id == "know-refund")
    assert similarity("You can get a refund within 30 days of buying Lockgate.", refund.value) >= refund.threshold
