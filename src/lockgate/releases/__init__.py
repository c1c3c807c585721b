"""Releases: immutable, content-hashed bundles of everything that shapes an answer, and their diffs."""

from __future__ import annotations


def parse_release_id(release_id: str) -> tuple[str, int] | None:
    """`support-bot@3` -> ("support-bot", 3); None when it is not of that form."""
    route, at, version = release_id.partition("@")
    if not at or not route or not version.isdigit():
        return None
    return route, int(version)
