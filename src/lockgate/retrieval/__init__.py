"""Retrieval: a release's knowledge text, searched with BM25 for every request (see retriever.py)."""

from lockgate.retrieval.knowledge import KnowledgeError, KnowledgeText, load_knowledge
from lockgate.retrieval.retriever import (
    FACTS_PLACEHOLDER,
    Passage,
    Retrieved,
    Retriever,
    system_prompt_with_facts,
)

__all__ = [
    "FACTS_PLACEHOLDER",
    "KnowledgeError",
    "KnowledgeText",
    "Passage",
    "Retrieved",
    "Retriever",
    "load_knowledge",
    "system_prompt_with_facts",
]
