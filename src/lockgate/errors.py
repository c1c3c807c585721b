"""One exception hierarchy for everything a client can be told went wrong.

Each class knows its HTTP status and its OpenAI error `type`/`code`, so the gateway turns any of
them into the body OpenAI's SDK expects: `{"error": {"message", "type", "param", "code"}}`.
The SDK picks its exception class from the status alone (400 BadRequestError, 401
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 413/422 ..., 429 RateLimitError,
>=500 InternalServerError), so the status is the part that must be right.
Messages say what was wrong and how to fix it; they never carry internals.
"""

from __future__ import annotations

from typing import Any


class LockgateError(Exception):
    status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(LockgateError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(LockgateError):
    status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(LockgateError):
    status = 403
    error_type = "invalid_request_error"
    code = "route_not_allowed"


class RouteNotFound(LockgateError):
    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFound(LockgateError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(LockgateError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(LockgateError):
    status = 429
    error_type = "rate_limit_error"  # the type OpenAI uses for its own 429s
    code = "rate_limit_exceeded"


class UpstreamError(LockgateError):
    """The backend failed in a way the gateway could not recover from (after retries and fallbacks)."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class ServiceUnavailable(LockgateError):
    status = 503
    error_type = "server_error"
    code = "service_unavailable"


class RateLimiterUnavailable(ServiceUnavailable):
    """Redis could not decide a rate limit and `redis.on_failure` is `closed`."""

    code = "rate_limiter_unavailable"


class Conflict(LockgateError):
    """The request is well formed but does not apply to the current state (e.g. no rollout to pause)."""

    status = 409
    error_type = "invalid_request_error"
    code = "conflict"
