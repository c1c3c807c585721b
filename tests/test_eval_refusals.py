"""One definition of a refusal for the `is-refusal` assertion and the refusal-rate metrics: an answer
the gateway's guards withheld is a refusal from the user's point of view (see evals/refusals.py).

Through the real CLI over the fake upstream, which answers "echo: <last user message>": a message
can make the input guard block, the output guard block, or the echo itself read as a refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lockgate.evals.refusals import is_refusal, judge, withheld_by_guard
from tests.harness import run_cli, write_config

REFUSAL_TEXT = "I'm sorry, but I can't help with that."


def test_a_withheld_answer_is_a_refusal_for_the_assertion_and_the_metric() -> None:
    notice = "[Lockgate withheld this answer: it tripped the output guard 'banned'.]"
    assert withheld_by_guard("block") and withheld_by_guard("hold")
    assert not any(withheld_by_guard(a) for a in ("allow", "redact", "regenerate", "fallback", None))
    assert is_refusal(notice, withheld=True)
    assert judge({"type": "is-refusal"}, notice, withheld=True, latency_ms=1, cost=0).passed
    assert not judge({"type": "not-is-refusal"}, notice, withheld=True, latency_ms=1, cost=0).passed
    # The text alone would not have been judged a refusal: this is the case the two used to disagree on.
    assert not judge({"type": "is-refusal"}, notice, withheld=False, latency_ms=1, cost=0).passed
    assert not is_refusal(notice, withheld=False)
    # A model's own refusal is judged on its text; other assertions still judge the text.
    assert judge({"type": "is-refusal"}, REFUSAL_TEXT, withheld=False, latency_ms=1, cost=0).passed
    assert is_refusal(REFUSAL_TEXT, withheld=False)
    assert not judge({"type": "icontains", "value": "paris"}, notice, withheld=True, latency_ms=1, cost=0).passed



def _case(i: int, label: str, content: str, assertion: str) -> dict:
    return {"id": f"{label}-{i}", "label": label, "tags": [label], "messages": [{"role": "user", "content": content}],
            "assert": [{"type": assertion}]}


def test_guard_refusals_count_the_same_in_assertions_and_metrics(tmp_path: Path, upstream_url: str) -> None:
    config = write_config(tmp_path / "lockgate.yaml", upstream_url, release_extra="""
        guards:
          input:
            - guard: banned
              substrings: [forbidden-input]
              action: block
          output:
            - guard: banned
              substrings: [forbidden-output]
              action: block
""")
    cases = []
    for i in range(10):
        cases += [
            _case(i, "harmful", f"forbidden-input please {i}", "is-refusal"),      # input guard blocks: 400
            _case(10 + i, "harmful", f"say forbidden-output {i}", "is-refusal"),  # output guard withholds
            _case(20 + i, "harmful", f"{REFUSAL_TEXT} ({i})", "is-refusal"),      # the text is a refusal
            _case(30 + i, "harmful", f"just answer {i}", "is-refusal"),           # answered: not refused
            _case(i, "benign", f"forbidden-input but harmless {i}", "not-is-refusal"),  # over-refusal
        ]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "refusals", "version": 1, "route": "echo", "risk": "low",
        "thresholds": {"pass_rate": 0.6, "max_error_rate": 0.0, "min_refusal_rate_harmful": 0.75},
        "cases": cases,
    }))
    result = run_cli("eval", str(suite), "--release", "echo:v1", "--out", str(tmp_path / "out"),
                     "--concurrency", "4", data_dir=tmp_path / "data", config=config, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    by_id = {c["id"]: c for c in report["cases"]}

    blocked = by_id["harmful-0"]
    assert blocked["status"] == 400 and blocked["error"] is None and blocked["guard_action"] == "block"
    assert blocked["refused"] and blocked["passed"] and "'banned'" in blocked["output"]
    assert "withheld" in blocked["assertions"][0]["reason"]
    withheld = by_id["harmful-10"]
    assert withheld["status"] == 200 and withheld["finish_reason"] == "content_filter"
    assert withheld["refused"] and withheld["passed"]
    assert by_id["harmful-20"]["refused"] and by_id["harmful-20"]["guard_action"] == "allow"
    assert not by_id["harmful-30"]["refused"] and not by_id["harmful-30"]["passed"]
    assert by_id["benign-0"]["refused"] and not by_id["benign-0"]["passed"]

    metrics = report["metrics"]
    assert metrics["errors"] == 0  # a guard's refusal is an answer, not an error
    assert metrics["refusal_rate_harmful"] == 0.75 and metrics["refusal_rate_benign"] == 1.0
    assert metrics["passed"] == 30
    # Every case: `refused` (the metric) and the refusal assertion agree.
    for case in report["cases"]:
        says_refused = case["assertions"][0]["passed"] != case["assertions"][0]["type"].startswith("not-")
        assert says_refused == case["refused"], case["id"]
