"""HTTP glue for the reward APIs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from rrm_server.api.cancellation import with_cancellation
from rrm_server.api.deps import Timing, get_rewards, get_timing
from rrm_server.api.errors import ERROR_RESPONSES
from rrm_server.api.responses import returns, send
from rrm_server.protocol.rewards import GetRewardRequest, GetRewardResponse, RewardsRequest, RewardsResponse
from rrm_server.serving.rewards import RewardServing

router = APIRouter(tags=["rewards"], responses=ERROR_RESPONSES)
Rewards = Annotated[RewardServing, Depends(get_rewards)]


@router.post("/v1/rewards", **returns(RewardsResponse))
@with_cancellation
async def rewards(body: RewardsRequest, serving: Rewards, timing: Annotated[Timing, Depends(get_timing)],
                  raw_request: Request) -> Response:
    """Groups of responses in, one reward per response out (normalised within its group)."""
    return send(await serving.rewards(body, arrived=timing.arrived, deadline=timing.deadline))


@router.post("/get_reward", **returns(GetRewardResponse))
async def get_reward(body: GetRewardRequest, serving: Rewards,
                     timing: Annotated[Timing, Depends(get_timing)]) -> Response:
    """OpenRLHF's remote reward endpoint (``--reward.remote_url http://host:port/get_reward``).

    Not cancelled on disconnect: in group mode a sample's siblings wait on the same ranking, and a
    retry of this sample joins it. Votes still thinking near the deadline (--reward-deadline, or
    X-Request-Deadline) get forced verdicts: a judged reward in time rather than a neutral one."""
    return send(await serving.get_reward(body, arrived=timing.arrived, deadline=timing.deadline))
