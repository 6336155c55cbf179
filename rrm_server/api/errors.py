"""One JSON error shape for every failure: ``{"error": {"type", "message", "param", "code"}}``."""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rrm_server.errors import RRMError
from rrm_server.protocol.errors import ErrorResponse, error_document

logger = logging.getLogger(__name__)


def error_response(status: int, type_: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_document(status, type_, message, param).model_dump(), status_code=status,
                        headers=headers)


# Documented on every route so the OpenAPI schema names the shape clients must handle. "4XX" also keeps
# FastAPI from documenting its default 422 body, which this service never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    "4XX": {"model": ErrorResponse, "description": "Missing API key (401), unknown route (404) or method "
            "(405), body not sent in time (408), body too large (413), server at capacity (429)"},
    503: {"model": ErrorResponse, "description": "Engine not ready, restarting or failed"},
    504: {"model": ErrorResponse, "description": "The server's deadline (--request-timeout) passed before even "
          "the forced verdicts its votes get shortly before it could finish"},
}

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
               429: "rate_limited"}


def _unparsable_body(cause: BaseException | None) -> str | None:
    """Why FastAPI could not parse a JSON body (it raises a bare 400 "error parsing the body" from these)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not valid JSON: it is not UTF-8 ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "request body is not valid JSON here: it is nested too deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        limit = sys.get_int_max_str_digits()
        return f"request body is not valid JSON here: a number has more than {limit} digits"
    return None if cause is None else "request body could not be parsed as JSON"


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RRMError)
    async def _rrm(_: Request, exc: RRMError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
        return error_response(exc.status_code, exc.error_type, exc.message, exc.param, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _loc(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            param = "body"
            message = f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
        elif param == "body" and first.get("type") == "missing":
            message = "the request body is missing (or null); send a JSON object"
        elif param == "body" and isinstance(exc.body, bytes):
            # FastAPI reads a body as JSON only with a JSON content type; otherwise it stays bytes.
            given = request.headers.get("content-type")
            message = ("the request body must be a JSON object sent with Content-Type: application/json "
                       f"(given: {given or 'no Content-Type'})")
        else:
            message = "; ".join(f"{_loc(tuple(e.get('loc', ())))}: {e['msg']}" for e in errors[:5])
            if len(errors) > 5:
                message += f" (and {len(errors) - 5} more)"
        return error_response(400, "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (message := _unparsable_body(exc.__cause__)) is not None:
            return error_response(400, "invalid_request", message, "body")
        return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the request was not completed")
