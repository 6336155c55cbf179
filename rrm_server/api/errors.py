"""One JSON error shape for every failure: ``{"error": {"type", "message", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from rrm_server.errors import RRMError

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    type: str
    message: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(status: int, type_: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(type=type_, message=message, param=param, code=status))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# Documented on every route so the OpenAPI schema names the shape clients must handle.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    503: {"model": ErrorResponse, "description": "Engine not ready or failed"},
}

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited"}


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RRMError)
    async def _rrm(_: Request, exc: RRMError) -> JSONResponse:
        return error_response(exc.status_code, exc.error_type, exc.message, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _loc(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            param = "body"
            message = f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
        else:
            message = "; ".join(f"{_loc(tuple(e.get('loc', ())))}: {e['msg']}" for e in errors[:5])
            if len(errors) > 5:
                message += f" (and {len(errors) - 5} more)"
        return error_response(400, "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the request was not completed")
