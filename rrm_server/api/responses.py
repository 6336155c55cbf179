"""Sending a serving record as the response body, once.

With ``response_model`` FastAPI validates the returned record again and re-serializes it; the
serving layer already built a validated wire record, so routes document its model and send it
as it is."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel


def returns(model: type[BaseModel]) -> dict[str, Any]:
    """Route arguments: ``model`` documented as the 200 body, no second validation pass."""
    return {"response_model": None, "responses": {200: {"model": model, "description": "Successful Response"}}}


def send(record: BaseModel) -> Response:
    return Response(record.model_dump_json(), media_type="application/json")
