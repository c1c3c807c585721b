"""The answer must be JSON matching the release's `output_schema` (or just JSON, without one).

A model that misses the format once often gets it right when asked again, so the default action is
to regenerate; the pipeline bounds how often and falls back after that.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from lockgate.guards.base import Action, GuardContext, Verdict


class JsonSchemaGuard:
    name = "json_schema"

    def __init__(self, action: Action = Action.REGENERATE, schema: dict[str, Any] | None = None) -> None:
        self.action = action
        self._schema = schema
        self._validators: dict[int, Any] = {}

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = id(schema)
        if key not in self._validators:
            cls = jsonschema.validators.validator_for(schema)
            self._validators[key] = cls(schema)
        return self._validators[key]

    def check(self, text: str, context: GuardContext) -> Verdict:
        schema = self._schema or context.output_schema
        try:
            value = json.loads(_strip_fence(text))
        except json.JSONDecodeError as exc:
            return Verdict(self.name, self.action, 1.0, f"the answer is not JSON ({exc.msg} at char {exc.pos})")
        if schema is None:
            return Verdict(self.name, Action.ALLOW)
        error = next(iter(sorted(self._validator(schema).iter_errors(value), key=lambda e: e.path)), None)
        if error is None:
            return Verdict(self.name, Action.ALLOW)
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Verdict(self.name, self.action, 1.0, f"the answer does not match the output schema at {where}: "
                       f"{error.message[:200]}")


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; the JSON inside is what counts."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
    return stripped
