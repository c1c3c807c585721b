"""Reads `lockgate.yaml` and turns every problem into a message naming the file, line, key path and fix."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lockgate.config.alerts import reference_problems as alert_reference_problems
from lockgate.config.schema import BackendFallback, LockgateConfig
from lockgate.retrieval.chunking import chunk_markdown
from lockgate.retrieval.knowledge import KnowledgeError, KnowledgeText, load_knowledge

DEFAULT_CONFIG_NAME = "demo.yaml"

# Hints for the pydantic error types people meet most, so a message says how to fix, not just what.
_FIX_HINTS = {
    "extra_forbidden": "remove it, or check its spelling against docs/configuration.md",
    "missing": "add this key",
    "literal_error": "use one of the allowed values",
    "union_tag_invalid": "set `kind:` to `llama_cpp` or `openai`",
    "union_tag_not_found": "add `kind: llama_cpp` or `kind: openai`",
    "string_pattern_mismatch": "names are lowercase letters, digits, '.', '_' or '-'; URLs start with http(s)://",
}


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None


class ConfigError(Exception):
    """The configuration cannot be used. `str()` is a complete, human-readable report."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the configuration:"]
        for p in problems:
            where = f"{source}:{p.line}" if p.line else source
            lines.append(f"  - {where}: {p.path or '(top level)'}: {p.message}")
        super().__init__("\n".join(lines))


def load_config(path: str | Path) -> LockgateConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigProblem("", "file not found; pass an existing --config")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read the file as UTF-8 text: {exc}")]) from None
    return parse_config(text, source=str(path), base_dir=path.parent)


def load_default_config() -> LockgateConfig:
    """The embedded default that `lockgate serve` runs when given no configuration."""
    text = resources.files("lockgate.config").joinpath(DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")
    return parse_config(text, source=f"<embedded {DEFAULT_CONFIG_NAME}>")


def parse_config(text: str, *, source: str, base_dir: Path | None = None) -> LockgateConfig:
    """`base_dir` is where relative paths in the file (knowledge texts) are read from; None: the
    current folder."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML: {problem}", line)]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigProblem("", "the file must be a mapping with `backends:` and `routes:`", 1)]
        )
    try:
        config = LockgateConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_problem_from_pydantic(err, root) for err in exc.errors()]
        raise ConfigError(source, problems) from None
    problems = _reference_problems(config) + _load_knowledge(config, base_dir)
    if problems:
        raise ConfigError(source, [_with_line(p, root) for p in problems])
    return config


def _load_knowledge(config: LockgateConfig, base_dir: Path | None) -> list[ConfigProblem]:
    """Reads every release's knowledge text once, now, and attaches it to the release: its hash is
    part of the release's identity, and a missing file is a configuration error, not a failed request."""
    loaded: dict[str, KnowledgeText] = {}
    problems = []
    for route_name, route in config.routes.items():
        for label, release in route.releases.items():
            if release.retrieval is None:
                continue
            source, where = release.retrieval.knowledge, f"routes.{route_name}.releases.{label}.retrieval.knowledge"
            try:
                if source not in loaded:
                    loaded[source] = load_knowledge(source, base_dir)
            except KnowledgeError as exc:
                problems.append(ConfigProblem(where, str(exc)))
                continue
            if not chunk_markdown(loaded[source].text, release.retrieval.chunking):
                problems.append(ConfigProblem(where, f"knowledge file {loaded[source].path} has only headings; "
                                                     "give it text under them to retrieve"))
                continue
            release.retrieval.attach(loaded[source])
    return problems


def _problem_from_pydantic(err: Any, root: yaml.Node | None) -> ConfigProblem:
    loc = [str(part) for part in err["loc"] if not _is_union_member_tag(part)]
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    hint = _FIX_HINTS.get(err["type"])
    if hint:
        message = f"{message}; {hint}"
    return _with_line(ConfigProblem(".".join(loc), message), root)


def _is_union_member_tag(part: Any) -> bool:
    # pydantic puts the chosen union member in the location (e.g. "llama_cpp", "BackendFallback");
    # it is not a key in the file.
    return isinstance(part, str) and (part in ("llama_cpp", "openai") or part[:1].isupper())


def _reference_problems(config: LockgateConfig) -> list[ConfigProblem]:
    known = ", ".join(sorted(config.backends)) or "none declared"
    problems = []
    for route_name, route in config.routes.items():
        for label, release in route.releases.items():
            where = f"routes.{route_name}.releases.{label}"
            if release.backend not in config.backends:
                problems.append(
                    ConfigProblem(
                        f"{where}.backend",
                        f"unknown backend '{release.backend}'; declare it under `backends:` or use one of: "
                        f"{known}",
                    )
                )
            for i, fallback in enumerate(release.fallbacks):
                if isinstance(fallback, BackendFallback) and fallback.backend not in config.backends:
                    problems.append(
                        ConfigProblem(
                            f"{where}.fallbacks.{i}.backend",
                            f"unknown backend '{fallback.backend}'; use one of: {known}",
                        )
                    )
    problems += [ConfigProblem(path, message) for path, message in alert_reference_problems(config.alerts,
                                                                                             set(config.routes))]
    return problems


def _with_line(problem: ConfigProblem, root: yaml.Node | None) -> ConfigProblem:
    node = _find_node(root, problem.path.split(".") if problem.path else [])
    if node is None:
        return problem
    return ConfigProblem(problem.path, problem.message, node.start_mark.line + 1)


def _find_node(node: yaml.Node | None, parts: list[str]) -> yaml.Node | None:
    """Walks the composed YAML tree along a key path; stops at the deepest node that exists."""
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            return node
    return node
