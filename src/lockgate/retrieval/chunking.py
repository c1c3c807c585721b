"""Cuts a Markdown knowledge text into chunks: by heading (one chunk per section) or by paragraph
(one per blank-line-separated block, under its section's heading).

A chunk keeps its section's heading as its title: the title is searched along with the text (a
question about "pricing" finds the facts under `## Pricing` even when they never say the word),
and it names the chunk in traces (`pricing`, `pricing-2`), so a reader can find what was retrieved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Chunking = Literal["heading", "paragraph"]
CHUNKINGS: tuple[Chunking, ...] = ("heading", "paragraph")

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Chunk:
    id: str
    title: str
    text: str

    @property
    def searchable(self) -> str:
        return f"{self.title}\n{self.text}"


def _slug(title: str) -> str:
    return _SLUG.sub("-", title.casefold()).strip("-") or "intro"


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, body lines) in order; text before the first heading has the title ''."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            sections.append((match.group(2), []))
        else:
            sections[-1][1].append(line.rstrip())
    return sections


def _paragraphs(lines: list[str]) -> list[str]:
    blocks, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def chunk_markdown(text: str, mode: Chunking) -> list[Chunk]:
    if mode not in CHUNKINGS:
        raise ValueError(f"unknown chunking {mode!r}; use one of: {', '.join(CHUNKINGS)}")
    chunks: list[Chunk] = []
    used: set[str] = set()

    def unique(base: str) -> str:
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}-{n}"
        used.add(candidate)
        return candidate

    for title, lines in _sections(text):
        blocks = _paragraphs(lines)
        if not blocks:
            continue  # a heading with nothing under it (the document's title, say) is not a fact
        if mode == "heading":
            chunks.append(Chunk(unique(_slug(title)), title, "\n".join(blocks)))
        else:
            for block in blocks:
                chunks.append(Chunk(unique(_slug(title)), title, block))
    return chunks
