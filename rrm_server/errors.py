"""Errors the service reports to callers; the API maps each to a status code and one JSON shape."""

from __future__ import annotations


class RRMError(Exception):
    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(RRMError):
    status_code = 400
    error_type = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    error_type = "context_length_exceeded"


class EngineFailure(RRMError):
    status_code = 503
    error_type = "engine_unavailable"


class Overloaded(RRMError):
    """The engines' queues are full: retry after ``retry_after`` seconds (sent as Retry-After)."""

    status_code = 429
    error_type = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(RRMError):
    """The service cannot take work in its current state (loading, restarting, failed); the error
    type names the state, the same on every endpoint."""

    status_code = 503

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
