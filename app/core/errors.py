"""Typed domain errors; the API maps each to a status and the OpenAI error envelope."""

from __future__ import annotations


class CloraError(Exception):
    """Base of every expected error; ``status`` and ``code`` shape the API answer."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(CloraError):
    status = 400


class Unauthenticated(CloraError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(CloraError):
    status = 403
    type = "permission_error"


class NotFound(CloraError):
    status = 404
    code = "not_found"


class Conflict(CloraError):
    status = 409
    code = "conflict"


class PayloadTooLarge(CloraError):
    status = 413
    code = "request_too_large"


class RateLimited(CloraError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, param: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.retry_after_s = retry_after_s


class EngineUnavailable(CloraError):
    status = 503
    type = "server_error"
    code = "engine_unavailable"
