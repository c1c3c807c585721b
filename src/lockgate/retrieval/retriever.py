"""A release's retriever: its knowledge text cut into chunks and indexed once, then searched per request.

At request time the best chunks for the user's last message go two ways: into the system prompt
(after the release's instruction, "Use only these facts:" by default) so the model can answer from
them, and into the grounding guard's context, so answers are checked against what was retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lockgate.retrieval.bm25 import Bm25Index, terms
from lockgate.retrieval.chunking import Chunk, Chunking, chunk_markdown
from lockgate.retrieval.knowledge import KnowledgeError, KnowledgeText

if TYPE_CHECKING:
    from lockgate.config.schema import RetrievalConfig

# Where a system prompt wants the retrieved facts; without it they follow the prompt. A small model
# tends to repeat the start of its prompt, so putting the facts first can matter.
FACTS_PLACEHOLDER = "{facts}"


@dataclass(frozen=True)
class Passage:
    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Retrieved:
    """What one request retrieved, best first; empty when nothing in the knowledge matched."""

    instruction: str
    passages: tuple[Passage, ...]

    def texts(self) -> list[str]:
        return [p.chunk.text for p in self.passages]

    def prompt_section(self) -> str | None:
        if not self.passages:
            return None
        return self.instruction + "\n" + "\n".join(self.texts())

    def trace(self) -> dict[str, Any]:
        return {"chunks": [p.chunk.id for p in self.passages], "scores": [round(p.score, 4) for p in self.passages]}


def system_prompt_with_facts(system_prompt: str | None, retrieved: Retrieved | None) -> str | None:
    """The release's system prompt with the retrieved section at `{facts}`, or after the prompt."""
    section = retrieved.prompt_section() if retrieved is not None else None
    if system_prompt and FACTS_PLACEHOLDER in system_prompt:
        return system_prompt.replace(FACTS_PLACEHOLDER, section or "").strip() or None
    return "\n\n".join(part for part in (system_prompt, section) if part) or None


class Retriever:
    def __init__(self, knowledge: KnowledgeText, *, chunking: Chunking, top_k: int, max_chars: int,
                 instruction: str) -> None:
        self.knowledge = knowledge
        self.top_k = top_k
        self.max_chars = max_chars
        self.instruction = instruction
        self.chunks = chunk_markdown(knowledge.text, chunking)
        if not self.chunks:
            raise KnowledgeError(f"knowledge file {knowledge.path} has no text outside its headings to retrieve")
        self._index = Bm25Index([terms(c.searchable) for c in self.chunks])

    @classmethod
    def from_config(cls, config: RetrievalConfig) -> Retriever:
        return cls(config.knowledge_text(), chunking=config.chunking, top_k=config.top_k,
                   max_chars=config.max_chars, instruction=config.instruction)

    def retrieve(self, query: str) -> Retrieved:
        """The top chunks for `query` that fit in `max_chars` together (the best one always does,
        cut if it must be: a question that matched something gets at least its best match)."""
        passages: list[Passage] = []
        budget = self.max_chars
        for index, score in self._index.top(terms(query), self.top_k):
            chunk = self.chunks[index]
            if not passages and len(chunk.text) > budget:
                chunk = Chunk(chunk.id, chunk.title, chunk.text[:budget])
            if len(chunk.text) > budget:
                continue
            passages.append(Passage(chunk, score))
            budget -= len(chunk.text)
        return Retrieved(self.instruction, tuple(passages))
