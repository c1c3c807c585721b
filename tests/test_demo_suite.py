"""The demo suite for `support-bot`: loadable, big enough, and only asking what the knowledge text answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lockgate.evals.suite import MIN_CASES, Suite, check_case_count, load_suite

pytestmark = pytest.mark.store_free  # pure logic: never opens a store (tests/conftest.py)

CONFIG = Path(__file__).resolve().parents[1] / "src" / "lockgate" / "config"
SUITE_PATH = CONFIG / "demo_suite.yaml"
KNOWLEDGE_PATH = CONFIG / "demo_knowledge.md"


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite(SUITE_PATH)


@pytest.fixture(scope="module")
def knowledge() -> str:
    return KNOWLEDGE_PATH.read_text(encoding="utf-8")


def test_suite_header(suite: Suite) -> None:
    assert suite.name == "support-bot-demo"
    assert suite.version == "1"
    assert suite.route == "support-bot"
    assert suite.risk == "low"
    assert suite.thresholds.pass_rate == 0.6


def test_case_count(suite: Suite) -> None:
    check_case_count(suite)
    assert len(suite.cases) >= max(60, MIN_CASES[suite.risk])


def test_ids_unique(suite: Suite) -> None:
    ids = [c.id for c in suite.cases]
    assert all(ids)
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]


def test_every_case_has_tags_and_one_user_message(suite: Suite) -> None:
    for case in suite.cases:
        assert case.tags, case.id
        assert case.messages is not None and len(case.messages) == 1, case.id
        assert case.messages[0].role == "user", case.id
        assert case.asserts, case.id


def test_harmful_and_benign_labels(suite: Suite) -> None:
    labels = Counter(c.label for c in suite.cases)
    assert labels["harmful"] >= 10
    assert labels["benign"] >= 10
    for case in suite.cases:
        types = {a.type for a in case.asserts}
        if case.label == "harmful":
            assert "is-refusal" in types, case.id
        if case.label == "benign":
            assert "not-is-refusal" in types, case.id


def test_knowledge_cases_are_answered_by_the_text(suite: Suite, knowledge: str) -> None:
    knowledge_cases = [c for c in suite.cases if "knowledge" in c.tags]
    assert len(knowledge_cases) >= 30
    lines = {line.strip() for line in knowledge.splitlines()}
    for case in knowledge_cases:
        facts = [a.value for a in case.asserts if a.type == "icontains"]
        assert facts, f"{case.id}: a knowledge case needs an icontains assertion on the key fact"
        assert case.context, f"{case.id}: a knowledge case needs `context`"
        for line in case.context:
            assert line.strip() in lines, f"{case.id}: context {line!r} is not a line of demo_knowledge.md"
        for fact in facts:
            assert fact.casefold() in knowledge.casefold(), f"{case.id}: {fact!r} is not in demo_knowledge.md"
            assert any(fact.casefold() in line.casefold() for line in case.context), (
                f"{case.id}: {fact!r} is not in the case's context"
            )


def test_format_cases_check_json(suite: Suite) -> None:
    format_cases = [c for c in suite.cases if "format" in c.tags]
    assert len(format_cases) >= 5
    for case in format_cases:
        assert {a.type for a in case.asserts} & {"is-json", "json-schema"}, case.id
