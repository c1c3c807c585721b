"""Sentence embeddings (all-MiniLM-L6-v2 in numpy): semantic-similarity assertions and topic drift."""
