"""The one JSON error shape: ``{"error": {"type", "message", "param", "code"}}``."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    type: str
    message: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


def _encodable(text: str) -> str:
    # The error path must not fail: a lone surrogate echoed from a request cannot be UTF-8 encoded.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_document(status: int, type_: str, message: str, param: str | None = None) -> ErrorResponse:
    return ErrorResponse(error=ErrorBody(type=type_, message=_encodable(message),
                                         param=None if param is None else _encodable(param), code=status))


def error_body(status: int, type_: str, message: str, param: str | None = None) -> bytes:
    return error_document(status, type_, message, param).model_dump_json().encode()
