"""Recorded judgments (``--record-judgments N``) as JSON; the API keys cover them like any data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from rrm_server.api.deps import get_runtime
from rrm_server.api.errors import ERROR_RESPONSES, error_response
from rrm_server.api.responses import returns, send
from rrm_server.cache import CacheUnavailable
from rrm_server.protocol.judgments import MAX_LIST, JudgmentList, JudgmentRecord
from rrm_server.serving.runtime import Runtime

router = APIRouter(prefix="/v1/judgments", tags=["judgments"], responses=ERROR_RESPONSES)
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
OFF = "judgments are not recorded: start the server with --record-judgments N to keep the last N"


def _unavailable(e: CacheUnavailable) -> JSONResponse:
    return error_response(503, "cache_unavailable", f"the recorded judgments cannot be read now: {e}")


@router.get("", **returns(JudgmentList))
async def list_judgments(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20) -> Response:
    """Summaries of the newest recorded judgments, newest first (empty when recording is off)."""
    recorder = runtime.judgments
    try:
        data = await recorder.recent(limit)
    except CacheUnavailable as e:
        return _unavailable(e)
    return send(JudgmentList(data=data, recording=recorder.recording()))


@router.get("/{judgment_id}", **returns(JudgmentRecord))
async def get_judgment(runtime: RuntimeDep, judgment_id: Annotated[str, Path(max_length=200)]) -> Response:
    """One recorded judgment: its request as received and its response as returned."""
    recorder = runtime.judgments
    if not recorder.enabled:
        return error_response(404, "not_found", OFF, "judgment_id")
    try:
        record = await recorder.get(judgment_id)
    except CacheUnavailable as e:
        return _unavailable(e)
    if record is None:
        return error_response(404, "not_found", f"no recorded judgment {judgment_id!r} (it may have expired or "
                              "been pushed out by newer ones)", "judgment_id")
    return Response(record, media_type="application/json")  # the bytes stored: encoded once, when recorded
