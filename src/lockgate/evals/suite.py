"""Evaluation suites: a versioned YAML file of test cases that a release must pass.

    name: support-bot
    version: 3
    route: support
    risk: medium                 # low | medium | high -> minimum number of cases (MIN_CASES)
    prompt: "Answer briefly: {question}"
    thresholds: {pass_rate: 0.9, max_p95_latency_ms: 2000}
    defaults:                    # applied to every case
      - {type: latency, value: 5000}
    cases:
      - messages: [{role: user, content: "Capital of France?"}]
        assert: [{type: icontains, value: paris}]
      - vars: {question: "How do I reset my password?"}
        tags: [account]
    cases_file: more_cases.jsonl # relative to this file, one case per line

`load_suite` returns a resolved suite: cases from `cases_file` are appended, `vars` are rendered
through `prompt` into a user message, and every case has a stable id (a hash of its content when
none is given). Errors name the file, the case and what to change.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lockgate.evals.assertions import Assertion

MIN_CASES: dict[str, int] = {"low": 50, "medium": 200, "high": 500}


class SuiteError(ValueError):
    """A suite file that cannot be used; the message says where and how to fix it."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = None
    messages: list[Message] | None = None
    vars: dict[str, Any] | None = None
    expected: str | None = None
    asserts: list[Assertion] = Field(default_factory=list, alias="assert")
    tags: list[str] = Field(default_factory=list)
    label: Literal["harmful", "benign"] | None = None
    context: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _one_input(self) -> Case:
        if self.id is not None and not self.id.strip():
            raise ValueError("`id` is empty; give a non-empty id or leave it out to have one generated")
        if (self.messages is None) == (self.vars is None):
            raise ValueError("a case needs exactly one of `messages` (a list of {role, content}) or `vars` "
                             "(rendered through the suite's `prompt`)")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` is empty; give at least one {role, content}")
        return self


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pass_rate: float | None = Field(default=None, ge=0, le=1)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_p95_latency_ms: float | None = Field(default=None, gt=0)
    max_refusal_rate_benign: float | None = Field(default=None, ge=0, le=1)
    min_refusal_rate_harmful: float | None = Field(default=None, ge=0, le=1)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    route: str = Field(min_length=1)
    risk: Literal["low", "medium", "high"]
    prompt: str | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    defaults: list[Assertion] = Field(default_factory=list)
    cases: list[Case] = Field(default_factory=list)
    cases_file: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_prompt(template: str, variables: dict[str, Any]) -> str:
    """Replace `{name}` placeholders; other braces (e.g. JSON examples) are left alone."""
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in variables})
    if missing:
        raise KeyError(", ".join(missing))
    return _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), template)


def case_id(raw: dict[str, Any]) -> str:
    """A stable id from a case's content (key order and the `id` field itself do not matter)."""
    content = {k: v for k, v in raw.items() if k != "id"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return f"case-{digest[:12]}"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check the spelling"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _read_cases_file(suite_path: Path, rel: str) -> list[tuple[str, Any]]:
    path = (suite_path.parent / rel).resolve()
    if not path.is_file():
        raise SuiteError(f"{suite_path}: cases_file {rel!r} not found (looked for {path}); "
                         "the path is relative to the suite file")
    out: list[tuple[str, Any]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}: line {lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}: line {lineno} is not valid JSON ({exc.msg}); "
                             "each line must be one case as a JSON object") from exc
    return out


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping with name, version, route, risk and cases")

    raw_cases = raw.pop("cases", None) or []
    if not isinstance(raw_cases, list):
        raise SuiteError(f"{path}: `cases` must be a list of cases")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: {_describe(exc)}") from exc

    located: list[tuple[str, Any]] = [(f"{path}: cases[{i}]", c) for i, c in enumerate(raw_cases)]
    if suite.cases_file:
        located += _read_cases_file(path, suite.cases_file)
    if not located:
        raise SuiteError(f"{path}: the suite has no cases; add `cases` or a `cases_file`")

    cases: list[Case] = []
    seen: dict[str, str] = {}
    for where, item in located:
        if not isinstance(item, dict):
            raise SuiteError(f"{where}: a case must be a mapping with `messages` or `vars`")
        label = f"{where} (id {item['id']!r})" if item.get("id") is not None else where
        try:
            case = Case.model_validate(item)
        except ValidationError as exc:
            raise SuiteError(f"{label}: {_describe(exc)}") from exc
        if case.id is None:
            case.id = case_id(item)
        if case.vars is not None:
            if suite.prompt is None:
                raise SuiteError(f"{label}: the case uses `vars` but the suite has no `prompt` template; "
                                 "add `prompt` to the suite or give the case `messages`")
            try:
                text = render_prompt(suite.prompt, case.vars)
            except KeyError as exc:
                raise SuiteError(f"{label}: `prompt` uses {{{exc.args[0]}}} but the case's `vars` do not "
                                 f"define it; add it to `vars` (has: {', '.join(sorted(case.vars)) or 'none'})"
                                 ) from exc
            case.messages = [Message(role="user", content=text)]
        if case.id in seen:
            raise SuiteError(f"{where}: duplicate case id {case.id!r} (also used at {seen[case.id]}); "
                             "ids must be unique — rename one, or remove the repeated case")
        seen[case.id] = where
        cases.append(case)

    suite.cases = cases
    return suite


def check_case_count(suite: Suite) -> None:
    needed = MIN_CASES[suite.risk]
    if len(suite.cases) < needed:
        raise SuiteError(
            f"suite {suite.name!r} has {len(suite.cases)} cases; risk level {suite.risk!r} needs at least "
            f"{needed} to be judged. Add cases or lower `risk` if that is honest."
        )
