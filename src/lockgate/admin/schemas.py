"""Shapes shared by every admin resource: the error body and the error responses each route documents."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

RELEASE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}@[0-9]{1,18}$"


def _release_id(value: str) -> str:
    if not re.fullmatch(RELEASE_ID_PATTERN, value):
        raise ValueError(f"'{value}' is not a release id: use ROUTE@VERSION, e.g. support-bot@2")
    return value


# A release id in a path or query: documented with its pattern, checked with a message that shows the form.
ReleaseId = Annotated[
    str,
    AfterValidator(_release_id),
    WithJsonSchema({"type": "string", "pattern": RELEASE_ID_PATTERN, "examples": ["support-bot@2"]}),
]


class ErrorDetail(BaseModel):
    message: str = Field(description="What was wrong and how to fix it.")
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error, the same as the data plane's (OpenAI's) error body."""

    error: ErrorDetail


def error_response(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# Declared on every router; FastAPI then leaves out its own 422 schema, which is not what we send.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("Bad input: the message says what was wrong."),
    401: error_response("No API key, or an incorrect or revoked one."),
    403: error_response("The key's role is too low for this call; the message names the role needed."),
    404: error_response("No such resource."),
    413: error_response("The request body is larger than the gateway accepts."),
    422: error_response("The request does not match the documented schema; the message names each field."),
    500: error_response("Internal error; details are in the gateway's log."),
    503: error_response("The database is unavailable right now; retry shortly."),
}
