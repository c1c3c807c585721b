"""Validate bodies against OpenAI's own OpenAPI document (`/work/shared/openai/openapi.yaml`).

The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, except that parts of it still
use the OpenAPI 3.0 keyword `nullable: true`. jsonschema ignores unknown keywords, and ignoring
`nullable` would make those schemas *stricter* than OpenAI means (a stream chunk's
`"finish_reason": null` would be rejected against `type: string`). So before validating, every
`nullable: true` schema is rewritten to what it means: `anyOf: [<the schema>, {"type": "null"}]`.
Other OpenAPI-only keywords (`x-*`, `discriminator`, `format: unixtime`) are annotations to
jsonschema and are left alone.

The document is 3 MB of YAML; it is parsed once per process and cached.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = Path(os.environ.get("LOCKGATE_OPENAI_OPENAPI", "/work/shared/openai/openapi.yaml"))
DOC_URI = "urn:openai:openapi"

__all__ = ["OPENAPI_PATH", "ValidationError", "errors", "validate", "validator"]


def _nullable_to_anyof(node: Any) -> Any:
    """Recursively turn OpenAPI 3.0 `nullable: true` into the JSON Schema 2020-12 equivalent."""
    if isinstance(node, list):
        return [_nullable_to_anyof(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_anyof(v) for k, v in node.items()}
    if out.get("nullable") is True:
        inner = {k: v for k, v in out.items() if k != "nullable"}
        # Descriptions are annotations; keeping them on the inner schema is harmless.
        return {"anyOf": [inner, {"type": "null"}]}
    return out


@functools.cache
def _registry() -> Registry:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with OPENAPI_PATH.open("rb") as f:
        document = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader, chosen above
    components = {"components": {"schemas": _nullable_to_anyof(document["components"]["schemas"])}}
    # Internal refs are "#/components/schemas/X": they resolve inside this one resource.
    resource = Resource.from_contents(components, default_specification=DRAFT202012)
    return Registry().with_resource(DOC_URI, resource)


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/<schema_name>`; unknown names fail loudly on first use."""
    registry = _registry()
    contents = registry[DOC_URI].contents
    if schema_name not in contents["components"]["schemas"]:
        raise KeyError(f"{schema_name} is not a schema in {OPENAPI_PATH}")
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"}, registry=registry)


def errors(schema_name: str, instance: Any) -> list[str]:
    """Every violation, as readable lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(schema_name).iter_errors(instance)
    ]


def validate(schema_name: str, instance: Any) -> None:
    """Raise AssertionError listing every violation when `instance` does not match the schema."""
    problems = errors(schema_name, instance)
    if problems:
        raise AssertionError(
            f"body does not validate against {schema_name}:\n  " + "\n  ".join(problems) + f"\nbody: {instance!r}"
        )
