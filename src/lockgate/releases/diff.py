"""What changed between two releases, key by key.

Release contents are nested mappings (see `ReleaseSpec.content()`); a diff flattens both to dotted
key paths and lists every path that was added, removed or changed, so `lockgate release diff`
answers "what exactly is different about support-bot@3?" in one screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    @property
    def kind(self) -> str:
        if self.old is _MISSING:
            return "added"
        if self.new is _MISSING:
            return "removed"
        return "changed"

    def describe(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {_show(self.new)}"
        if self.kind == "removed":
            return f"- {self.path}: {_show(self.old)}"
        return f"~ {self.path}: {_show(self.old)} -> {_show(self.new)}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted paths; lists are indexed (`fallbacks.0.static`)."""
    if isinstance(value, dict):
        if not value:
            return {prefix: {}} if prefix else {}
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        if not value:
            return {prefix: []}
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def diff_contents(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    a, b = flatten(old), flatten(new)
    changes = []
    for path in sorted(a.keys() | b.keys()):
        before, after = a.get(path, _MISSING), b.get(path, _MISSING)
        if before != after:
            changes.append(Change(path, before, after))
    return changes


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def serving_hashes(config: Any) -> dict[str, str]:
    """Route -> content hash of the release the configuration serves."""
    return {name: route.releases[route.serve].content_hash() for name, route in config.routes.items()}
