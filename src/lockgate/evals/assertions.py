"""Assertions: one check of one model output, e.g. `{type: contains, value: "Paris"}`.

Every type can be negated with a `not-` prefix (`not-contains`). An assertion that cannot be
evaluated (no embedding model for `semantic-similarity`, a similarity function that raised) is an
*error*, never a pass and never a plain failure: the gate must not judge a release on checks it
could not run. Assertions are validated when the suite is loaded, so a typo in a type, a bad regex
or an invalid JSON schema is reported before any case runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, model_validator

from lockgate.guards.refusal import find_refusal

BASE_TYPES: tuple[str, ...] = (
    "equals",
    "contains",
    "icontains",
    "regex",
    "json-schema",
    "is-json",
    "is-refusal",
    "latency",
    "cost",
    "semantic-similarity",
)
ALLOWED_TYPES: tuple[str, ...] = BASE_TYPES + tuple(f"not-{t}" for t in BASE_TYPES)

_STRING_VALUE = {"equals", "contains", "icontains", "regex", "semantic-similarity"}
_NUMBER_VALUE = {"latency", "cost"}
_NO_VALUE = {"is-json", "is-refusal"}
DEFAULT_SIMILARITY_THRESHOLD = 0.8

Similarity = Callable[[str, str], float]


def split_type(type_: str) -> tuple[str, bool]:
    """`not-contains` -> ("contains", True)."""
    if type_.startswith("not-"):
        return type_[4:], True
    return type_, False


class Assertion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    value: Any = None
    threshold: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Assertion:
        if self.type not in ALLOWED_TYPES:
            raise ValueError(
                f"unknown assertion type {self.type!r}; allowed types: {', '.join(BASE_TYPES)} "
                "(each can be negated with a 'not-' prefix, e.g. 'not-contains')"
            )
        base, _ = split_type(self.type)
        if base in _STRING_VALUE and not isinstance(self.value, str):
            raise ValueError(f"assertion {self.type!r} needs a string `value`")
        if base in _NUMBER_VALUE and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float) or self.value < 0
        ):
            raise ValueError(f"assertion {self.type!r} needs a non-negative number `value` (the maximum)")
        if base in _NO_VALUE and self.value is not None:
            raise ValueError(f"assertion {self.type!r} takes no `value`; remove it")
        if base == "regex":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"assertion {self.type!r} has an invalid regex {self.value!r}: {exc}") from exc
        if base == "json-schema":
            if not isinstance(self.value, dict):
                raise ValueError(f"assertion {self.type!r} needs a JSON schema object as `value`")
            try:
                jsonschema.validators.validator_for(self.value).check_schema(self.value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"assertion {self.type!r} has an invalid JSON schema: {exc.message}") from exc
        if self.threshold is not None:
            if base != "semantic-similarity":
                raise ValueError(f"assertion {self.type!r} takes no `threshold`; only semantic-similarity does")
            if not 0.0 <= self.threshold <= 1.0:
                raise ValueError(f"assertion {self.type!r} needs a `threshold` between 0 and 1")
        return self


@dataclass(frozen=True)
class AssertionResult:
    passed: bool
    reason: str
    error: str | None = None


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_json_output(output: str) -> Any:
    """Parse `output` as JSON, tolerating a ```json fence around it. Raises ValueError."""
    match = _FENCE.match(output)
    text = match.group(1) if match else output
    return json.loads(text)


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check(
    base: str, a: Assertion, output: str, latency_ms: float, cost: float, similarity: Similarity | None
) -> tuple[bool, str] | AssertionResult:
    """Return (condition holds, description of what was found), or an error result."""
    v = a.value
    if base == "equals":
        return output == v, f"output {_short(output)} {'equals' if output == v else 'differs from'} {_short(v)}"
    if base == "contains":
        ok = v in output
        return ok, f"output {'contains' if ok else 'does not contain'} {_short(v)}"
    if base == "icontains":
        ok = v.casefold() in output.casefold()
        return ok, f"output {'contains' if ok else 'does not contain'} {_short(v)} (ignoring case)"
    if base == "regex":
        ok = re.search(v, output) is not None
        return ok, f"output {'matches' if ok else 'does not match'} /{v}/"
    if base in ("is-json", "json-schema"):
        try:
            data = parse_json_output(output)
        except ValueError as exc:
            return False, f"output is not valid JSON ({exc})"
        if base == "is-json":
            return True, "output is valid JSON"
        errors = sorted(jsonschema.validators.validator_for(v)(v).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            return False, f"output JSON does not match the schema at {where}: {errors[0].message}"
        return True, "output JSON matches the schema"
    if base == "is-refusal":
        span = find_refusal(output)
        if span is None:
            return False, "output is not a refusal"
        return True, f"output is a refusal ({_short(output[span.start:span.end])})"
    if base == "latency":
        return latency_ms <= v, f"latency {latency_ms:g} ms {'<=' if latency_ms <= v else '>'} limit {v:g} ms"
    if base == "cost":
        return cost <= v, f"cost {cost:g} {'<=' if cost <= v else '>'} limit {v:g}"
    if base == "semantic-similarity":
        threshold = a.threshold if a.threshold is not None else DEFAULT_SIMILARITY_THRESHOLD
        if similarity is None:
            return AssertionResult(
                False,
                "not evaluated",
                f"{a.type}: the embedding model is not available, so similarity cannot be measured; "
                "configure an embedding model or remove this assertion",
            )
        try:
            score = float(similarity(output, v))
        except Exception as exc:  # noqa: BLE001 - any failure of the model is an evaluation error
            return AssertionResult(False, "not evaluated", f"{a.type}: the similarity model failed: {exc}")
        ok = score >= threshold
        return ok, f"similarity {score:.3f} {'>=' if ok else '<'} threshold {threshold:g}"
    raise AssertionError(f"unhandled assertion type {base!r}")  # pragma: no cover - validated at load


def evaluate(
    assertion: Assertion | dict[str, Any],
    output: str,
    *,
    latency_ms: float,
    cost: float,
    similarity: Similarity | None = None,
) -> AssertionResult:
    """Judge one output. An assertion that could not be run is an error (passed=False, error set)."""
    a = assertion if isinstance(assertion, Assertion) else Assertion.model_validate(assertion)
    base, negated = split_type(a.type)
    checked = _check(base, a, output, latency_ms, cost, similarity)
    if isinstance(checked, AssertionResult):
        return checked
    holds, found = checked
    passed = not holds if negated else holds
    return AssertionResult(passed, f"{a.type} {'passed' if passed else 'failed'}: {found}")
