"""Releases: immutable, content-hashed bundles of everything that shapes an answer, and their diffs."""
