"""Sending a serving record as the response body, once.

With ``response_model`` FastAPI validates the returned record again and re-serializes it; the
serving layer already built a validated wire record, so routes document its model and send it
as it is."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel

from rrm_server.errors import RRMError
from rrm_server.protocol.errors import error_document

logger = logging.getLogger(__name__)


def returns(model: type[BaseModel]) -> dict[str, Any]:
    """Route arguments: ``model`` documented as the 200 body, no second validation pass."""
    return {"response_model": None, "responses": {200: {"model": model, "description": "Successful Response"}}}


def send(record: BaseModel) -> Response:
    return Response(record.model_dump_json(), media_type="application/json")


def send_events(events: AsyncIterator[tuple[str, Any]]) -> EventSourceResponse:
    """A streamed request's events as server-sent events; a failure after the stream started is
    its last event (``event: error``, the one error shape), since the status line is sent."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for name, record in events:
                yield format_sse_event(event=name, data_str=record.model_dump_json())
        except RRMError as e:
            doc = error_document(e.status_code, e.error_type, e.message, e.param)
            yield format_sse_event(event="error", data_str=doc.model_dump_json())
        except Exception:  # noqa: BLE001 (a bug: logged, and the client still gets the error shape)
            logger.exception("streamed request failed")
            doc = error_document(500, "internal_error", "the server failed while judging this request")
            yield format_sse_event(event="error", data_str=doc.model_dump_json())
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    # No buffering by proxies (nginx honours this header): events are only useful as they happen.
    return EventSourceResponse(body(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
