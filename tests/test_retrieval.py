"""Retrieval: chunking, BM25 ranking on the demo knowledge, the knowledge hash in the release's
identity, clear configuration errors, and the retrieved facts reaching the model, the grounding
guard and the trace of a real `lockgate serve` over the fake upstream."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from lockgate.config import ConfigError, load_config, load_default_config
from lockgate.devtools.fake_upstream import FakeUpstreamThread
from lockgate.evals.suite import load_suite
from lockgate.retrieval import KnowledgeError, Retriever, load_knowledge, system_prompt_with_facts
from lockgate.retrieval.bm25 import Bm25Index, terms
from lockgate.retrieval.chunking import chunk_markdown
from tests.harness import create_key, run_cli, write_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "lockgate" / "config"

# Measured on the demo suite's 36 knowledge cases with the demo releases' settings (heading chunks,
# BM25): every question's answer is in the top 3, and in the top 1. The floor is what was measured.
RECALL_AT_3_FLOOR = 1.0

DOC = """# Handbook

Read this first.

## Opening hours

We open at 9:00.
We close at 17:00.

Closed on public holidays.

## Prices

A coffee costs 3 euros.

## Empty section
"""


# -- chunking and ranking -----------------------------------------------------------------------


def test_heading_chunking_gives_one_chunk_per_section_titled_by_its_heading() -> None:
    chunks = chunk_markdown(DOC, "heading")
    assert [c.id for c in chunks] == ["handbook", "opening-hours", "prices"]
    assert chunks[1].title == "Opening hours"
    assert chunks[1].text == "We open at 9:00.\nWe close at 17:00.\nClosed on public holidays."
    assert "Empty section" not in {c.title for c in chunks}  # a heading with nothing under it is no fact


def test_paragraph_chunking_splits_sections_at_blank_lines() -> None:
    chunks = chunk_markdown(DOC, "paragraph")
    assert [c.id for c in chunks] == ["handbook", "opening-hours", "opening-hours-2", "prices"]
    assert chunks[2].text == "Closed on public holidays." and chunks[2].title == "Opening hours"
    assert chunks[1].searchable.startswith("Opening hours\n")


def test_terms_are_stemmed_and_drop_function_words() -> None:
    assert terms("What pricing tiers are there?") == terms("price tier")
    assert terms("Is it on v1 at 8787?") == ["v1", "8787"]


def test_bm25_ranks_the_rarer_matching_term_higher() -> None:
    index = Bm25Index([terms("the kill switch stops traffic"), terms("traffic is routed by weights"),
                       terms("support replies within one day")])
    ranked = index.top(terms("how do I stop all traffic with the kill switch"), 3)
    assert [doc for doc, _ in ranked] == [0, 1]  # the third shares no term, so it is not returned
    assert ranked[0][1] > ranked[1][1] > 0
    assert index.top(terms("quantum chromodynamics"), 3) == []


def test_each_knowledge_question_retrieves_its_answer_in_the_top_3() -> None:
    """recall@3 over the demo suite's knowledge cases, with the demo releases' own retrieval settings."""
    suite = load_suite(CONFIG_DIR / "demo_suite.yaml")
    config = load_default_config()
    for label in ("v1", "v2"):
        retriever = Retriever.from_config(config.routes["support-bot"].releases[label].retrieval)
        assert retriever.top_k == 3
        cases = [c for c in suite.cases if "knowledge" in c.tags]
        misses = []
        for case in cases:
            retrieved = retriever.retrieve(case.messages[0].content)
            text = "\n".join(retrieved.texts())
            if not all(line in text for line in case.context):
                misses.append((case.id, retrieved.trace()["chunks"]))
        recall = 1 - len(misses) / len(cases)
        assert len(cases) >= 30
        assert recall >= RECALL_AT_3_FLOOR, (label, recall, misses)


def test_max_chars_bounds_what_is_retrieved() -> None:
    knowledge = load_knowledge(str(CONFIG_DIR / "demo_knowledge.md"))
    retriever = Retriever(knowledge, chunking="heading", top_k=3, max_chars=120, instruction="Facts:")
    retrieved = retriever.retrieve("Which guard detects prompt injection attempts?")
    assert [p.chunk.id for p in retrieved.passages] == ["guards"]  # the best chunk, cut to fit
    assert len(retrieved.texts()[0]) == 120
    section = retrieved.prompt_section()
    assert section is not None and section.startswith("Facts:\nThe guards are:")
    assert retriever.retrieve("quantum chromodynamics").prompt_section() is None


def test_facts_follow_the_system_prompt_or_take_the_place_of_its_placeholder() -> None:
    knowledge = load_knowledge(str(CONFIG_DIR / "demo_knowledge.md"))
    retriever = Retriever(knowledge, chunking="heading", top_k=1, max_chars=1000, instruction="Facts:")
    retrieved = retriever.retrieve("How long is the refund window?")
    after = system_prompt_with_facts("Be brief.", retrieved)
    assert after is not None and after.startswith("Be brief.\n\nFacts:\nPaid plans are billed monthly")
    first = system_prompt_with_facts("{facts}\n\nBe brief.", retrieved)
    assert first is not None and first.startswith("Facts:\nPaid plans") and first.endswith("\n\nBe brief.")
    nothing = retriever.retrieve("quantum chromodynamics")
    assert system_prompt_with_facts("{facts}\n\nBe brief.", nothing) == "Be brief."
    assert system_prompt_with_facts(None, retrieved) == retrieved.prompt_section()
    assert system_prompt_with_facts(None, None) is None


# -- the knowledge in the release's identity ----------------------------------------------------


def _config_with_knowledge(tmp_path: Path, upstream_url: str, knowledge: str = "kb/facts.md", *,
                           retrieval_extra: str = "", guards: str = "") -> Path:
    return write_config(tmp_path / "lockgate.yaml", upstream_url, release_extra=f"""
        retrieval:
          knowledge: {knowledge}
          top_k: 2
          chunking: heading
{retrieval_extra}{guards}""")


def _write_knowledge(tmp_path: Path, text: str = DOC) -> Path:
    path = tmp_path / "kb" / "facts.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_editing_the_knowledge_text_makes_a_new_release(tmp_path: Path) -> None:
    knowledge = _write_knowledge(tmp_path)
    config_path = _config_with_knowledge(tmp_path, "http://127.0.0.1:9/v1")
    first = load_config(config_path).routes["echo"].releases["v1"]
    assert first.content()["retrieval"]["knowledge_sha256"] == load_knowledge(str(knowledge)).sha256
    assert load_config(config_path).routes["echo"].releases["v1"].content_hash() == first.content_hash()

    knowledge.write_text(DOC.replace("3 euros", "4 euros"))
    edited = load_config(config_path).routes["echo"].releases["v1"]
    assert edited.content_hash() != first.content_hash()

    # The text was read once, at load: the hash never touches the disk again.
    knowledge.unlink()
    assert edited.content_hash() == edited.content_hash()
    assert "4 euros" in edited.retrieval.knowledge_text().text


def test_release_create_registers_a_new_version_when_only_the_knowledge_changed(tmp_path: Path) -> None:
    knowledge = _write_knowledge(tmp_path)
    config_path = _config_with_knowledge(tmp_path, "http://127.0.0.1:9/v1")
    data = tmp_path / "data"
    assert "echo@1" in run_cli("release", "create", data_dir=data, config=config_path).stdout
    knowledge.write_text(DOC + "\n## Parking\n\nParking is free.\n")
    out = run_cli("release", "create", data_dir=data, config=config_path).stdout
    assert "echo@2" in out and "new" in out
    diff = run_cli("release", "diff", "echo@1", "echo@2", data_dir=data, config=config_path).stdout
    assert "1 change(s)" in diff and "retrieval.knowledge_sha256" in diff


# -- configuration errors -----------------------------------------------------------------------


def test_a_missing_knowledge_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    config_path = _config_with_knowledge(tmp_path, "http://127.0.0.1:9/v1", knowledge="kb/nope.md")
    with pytest.raises(ConfigError) as info:
        load_config(config_path)
    message = str(info.value)
    assert "routes.echo.releases.v1.retrieval.knowledge" in message
    assert str(tmp_path / "kb" / "nope.md") in message and "not found" in message
    assert f"{config_path}:" in message  # with the line of the key
    result = run_cli("release", "create", data_dir=tmp_path / "data", config=config_path, check=False)
    assert result.returncode == 2 and "nope.md" in result.stderr


@pytest.mark.parametrize(("knowledge", "expected"), [
    ("package:lockgate/config/no_such_file.md", "no file 'config/no_such_file.md'"),
    ("package:lockgate", "package:MODULE/PATH"),
    ("package:no_such_package_xyz/facts.md", "not installed"),
])
def test_bad_packaged_knowledge_is_explained(tmp_path: Path, knowledge: str, expected: str) -> None:
    config_path = _config_with_knowledge(tmp_path, "http://127.0.0.1:9/v1", knowledge=knowledge)
    with pytest.raises(ConfigError) as info:
        load_config(config_path)
    assert expected in str(info.value) and "retrieval.knowledge" in str(info.value)


@pytest.mark.parametrize(("extra", "expected"), [
    ("          top_k: 0\n", "retrieval.top_k"),
    ("          chunking: sentence\n", "'heading' or 'paragraph'"),
    ("          max_chars: 10\n", "retrieval.max_chars"),
    ("          top-k: 3\n", "remove it, or check its spelling"),
])
def test_bad_retrieval_settings_are_config_errors(tmp_path: Path, extra: str, expected: str) -> None:
    _write_knowledge(tmp_path)
    config_path = write_config(tmp_path / "lockgate.yaml", "http://127.0.0.1:9/v1", release_extra=f"""
        retrieval:
          knowledge: kb/facts.md
{extra}""")
    with pytest.raises(ConfigError) as info:
        load_config(config_path)
    assert expected in str(info.value)


def test_a_facts_placeholder_without_retrieval_is_a_config_error(tmp_path: Path) -> None:
    config_path = write_config(tmp_path / "lockgate.yaml", "http://127.0.0.1:9/v1", release_extra="""
      v2:
        backend: up
        model: ok
        system_prompt: "{facts} Be brief."
""")
    with pytest.raises(ConfigError, match="add `retrieval:` or remove `{facts}`"):
        load_config(config_path)


def test_an_empty_or_headings_only_knowledge_file_is_a_config_error(tmp_path: Path) -> None:
    knowledge = _write_knowledge(tmp_path, "   \n")
    config_path = _config_with_knowledge(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(config_path)
    knowledge.write_text("# Title\n\n## Section\n")
    with pytest.raises(ConfigError, match="only headings"):
        load_config(config_path)
    with pytest.raises(KnowledgeError, match="not found"):
        load_knowledge(str(tmp_path / "missing.md"))


# -- through the gateway ------------------------------------------------------------------------


def test_retrieved_facts_reach_the_model_the_grounding_guard_and_the_trace(
    tmp_path: Path, upstream: FakeUpstreamThread, start_gateway
) -> None:
    _write_knowledge(tmp_path)
    config_path = _config_with_knowledge(tmp_path, upstream.base_url, retrieval_extra="""\
          instruction: "Use only these facts:"
""", guards="""\
        guards:
          output:
            - guard: grounding
              action: block
""")
    data = tmp_path / "data"
    key = create_key(data)
    gw = start_gateway(config_path, data_dir=data)
    # Letters only: a number in the echoed answer would be a claim of its own.
    marker = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    question = f"Do we open at 9:00 and close at 17:00? {marker}"
    with httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {key}"}, timeout=10) as http:
        # The fake answers "echo: <question>": its words and figures are in the retrieved section.
        resp = http.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": question}]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == f"echo: {question}"
        sent = next(r for r in upstream.requests if marker in str(r))
        system = sent["messages"][0]
        assert system["role"] == "system"
        assert system["content"].startswith("You are a test.\n\nUse only these facts:\nWe open at 9:00.\n")
        assert "A coffee costs 3 euros." not in system["content"]  # only what matched, not the whole text
        assert sent["messages"][-1] == {"role": "user", "content": question}
        trace = gw.trace(resp.headers["x-request-id"])
        assert trace["retrieval"]["chunks"] == ["opening-hours"]
        grounding = next(v for v in trace["guards"]["output"] if v["guard"] == "grounding")
        assert grounding["action"] == "allow" and "supported by the context" in grounding["reason"]

        # A figure the retrieved facts do not hold is an unsupported claim: the guard withholds it.
        resp = http.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": "Does a coffee cost 7 euros?"}]})
        assert resp.status_code == 200 and resp.json()["choices"][0]["finish_reason"] == "content_filter"
        trace = gw.trace(resp.headers["x-request-id"])
        assert trace["retrieval"]["chunks"] == ["prices"]
        assert any(v["guard"] == "grounding" and v["action"] == "block" for v in trace["guards"]["output"])

        # Streamed requests are built the same way.
        with http.stream("POST", "/v1/chat/completions", json={"model": "echo", "stream": True, "messages": [
                {"role": "user", "content": f"Are you closed on public holidays? {marker}-s"}]}) as stream:
            assert stream.status_code == 200
            stream.read()
        sent = next(r for r in upstream.requests if f"{marker}-s" in str(r))
        assert "Closed on public holidays." in sent["messages"][0]["content"]
