"""The knowledge text a release retrieves from: found, read and hashed once, when the configuration loads.

The text is read exactly once and kept with its SHA-256: the hash goes into the release's content
hash (editing the knowledge makes a new release) and the same text builds the search index, so what
is served is always what was hashed, however the file changes on disk afterwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lockgate.backends.model_files import PACKAGE_SCHEME, ModelFileError, file_in_package


class KnowledgeError(Exception):
    """The knowledge text cannot be used; the message names the file and how to fix it."""


@dataclass(frozen=True)
class KnowledgeText:
    source: str  # as written in the configuration
    path: Path
    text: str
    sha256: str


def resolve_knowledge(source: str, base_dir: Path | None = None) -> Path:
    """`package:MODULE/FILE` is a file inside an installed package; anything else is a path, read
    relative to `base_dir` (the configuration file's folder) when it is not absolute."""
    if source.startswith(PACKAGE_SCHEME):
        module, _, filename = source[len(PACKAGE_SCHEME):].partition("/")
        if not module or not filename:
            raise KnowledgeError(f"knowledge {source!r}: write a packaged file as package:MODULE/PATH, "
                                 "e.g. package:lockgate/config/demo_knowledge.md")
        try:
            return file_in_package(module, filename)
        except ModelFileError as exc:
            raise KnowledgeError(f"knowledge file {source!r} not found: {exc}") from None
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        where = "the configuration file's folder" if base_dir is not None else "the current folder"
        raise KnowledgeError(f"knowledge file {path} not found; fix the path (a relative path is read from "
                             f"{where})")
    return path


def load_knowledge(source: str, base_dir: Path | None = None) -> KnowledgeText:
    path = resolve_knowledge(source, base_dir)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"knowledge file {path} cannot be read as UTF-8 text: {exc}") from None
    if not text.strip():
        raise KnowledgeError(f"knowledge file {path} is empty; give it the text the release should answer from")
    return KnowledgeText(source, path, text, hashlib.sha256(data).hexdigest())
