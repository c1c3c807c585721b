"""Retrieval: a release's knowledge text, searched with BM25 for every request (see retriever.py)."""

from lockgate.retrieval.knowledge import KnowledgeError, KnowledgeText, load_knowledge
from lockgate.retrieval.retriever import Passage, Retrieved, Retriever

__all__ = ["KnowledgeError", "KnowledgeText", "Passage", "Retrieved", "Retriever", "load_knowledge"]
