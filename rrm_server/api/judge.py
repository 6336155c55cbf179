"""HTTP glue for the judging API; the logic is in ``serving``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rrm_server.api.cancellation import with_cancellation
from rrm_server.api.deps import Timing, get_serving, get_timing
from rrm_server.api.errors import ERROR_RESPONSES
from rrm_server.api.responses import returns, send, send_events
from rrm_server.protocol.judge import (
    PairwiseRequest,
    PairwiseResponse,
    RankRequest,
    RankResponse,
    RenderRequest,
    RenderResponse,
)
from rrm_server.serving.judge import JudgeServing

router = APIRouter(prefix="/v1/judge", tags=["judge"], responses=ERROR_RESPONSES)
Serving = Annotated[JudgeServing, Depends(get_serving)]
Times = Annotated[Timing, Depends(get_timing)]


@router.post("/pairwise", **returns(PairwiseResponse))
@with_cancellation
async def pairwise(body: PairwiseRequest, serving: Serving, timing: Times, raw_request: Request) -> Response:
    """Judge two responses with k votes; the winner is their majority. ``stream: true``: server-sent
    events (vote, match, then result)."""
    if body.stream:
        return send_events(await serving.stream(body, arrived=timing.arrived, deadline=timing.deadline))
    return send(await serving.pairwise(body, arrived=timing.arrived, deadline=timing.deadline))


@router.post("/rank", **returns(RankResponse))
@with_cancellation
async def rank(body: RankRequest, serving: Serving, timing: Times, raw_request: Request) -> Response:
    """Rank N responses by ELO round robin or a knockout bracket. ``stream: true``: server-sent events
    (vote, match, then result)."""
    if body.stream:
        return send_events(await serving.stream(body, arrived=timing.arrived, deadline=timing.deadline))
    return send(await serving.rank(body, arrived=timing.arrived, deadline=timing.deadline))


@router.post("/render", **returns(RenderResponse))
async def render(body: RenderRequest, serving: Serving) -> Response:
    """Dry run: the exact prompt text and token ids a comparison would send to the engine."""
    return send(await serving.render(body))
