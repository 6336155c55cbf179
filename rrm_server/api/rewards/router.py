"""HTTP glue for the reward APIs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from rrm_server.api.cancellation import with_cancellation
from rrm_server.api.deps import get_rewards
from rrm_server.api.errors import ERROR_RESPONSES
from rrm_server.api.rewards.protocol import (
    GetRewardRequest,
    GetRewardResponse,
    RewardsRequest,
    RewardsResponse,
)
from rrm_server.api.rewards.serving import RewardServing
from rrm_server.errors import InvalidRequest
from rrm_server.rewards.templates import prompt_to_text, response_to_text, split_query

router = APIRouter(tags=["rewards"], responses=ERROR_RESPONSES)
Rewards = Annotated[RewardServing, Depends(get_rewards)]


@router.post("/v1/rewards", response_model=RewardsResponse)
@with_cancellation
async def rewards(body: RewardsRequest, serving: Rewards, raw_request: Request) -> RewardsResponse:
    """Groups of responses in, one reward per response out (normalised within its group)."""
    _check_groups(body, serving)
    return await serving.rewards(body)


@router.post("/get_reward", response_model=GetRewardResponse)
async def get_reward(body: GetRewardRequest, serving: Rewards) -> GetRewardResponse:
    """OpenRLHF's remote reward endpoint (``--reward.remote_url http://host:port/get_reward``).

    Not cancelled on disconnect: in group mode a sample's siblings wait on the same ranking, and a
    retry of this sample joins it."""
    _check_samples(body, serving)
    return await serving.get_reward(body)


def _check_groups(body: RewardsRequest, serving: RewardServing) -> None:
    """Text limits per group, naming the group's field, before any group starts engine work (groups run
    concurrently: a later group's error would leave earlier groups' work running for nothing)."""
    limit = serving.settings.max_text_chars
    for i, g in enumerate(body.groups):
        texts = [("query", "query", g.query), *((f"responses[{j}]", f"responses.{j}", r)
                                                for j, r in enumerate(g.responses))]
        for name, field, text in texts:
            if len(text) > limit:
                raise InvalidRequest(f"groups[{i}].{name} is {len(text)} characters; the limit is {limit}",
                                     f"groups.{i}.{field}")


def _check_samples(body: GetRewardRequest, serving: RewardServing) -> None:
    """Refuse, naming the field, a sample the judge cannot take, before it joins any work: the texts
    the judge reads are derived from the raw fields (template stripped), so the judge's own checks
    would report fields this request does not have, or, in group mode, fail every sibling's ranking."""
    if len(body.prompts) != len(body.query):
        return  # the serving reports misaligned fields
    tmpl = serving.settings.reward_template
    limit = serving.settings.max_text_chars
    for i, (q, p) in enumerate(zip(body.query, body.prompts)):
        question = prompt_to_text(p, tmpl)
        if not question.strip():
            raise InvalidRequest(f"prompts[{i}] has no question for the judge (empty, or only chat-template "
                                 "tokens)", f"prompts.{i}")
        if len(question) > limit:
            raise InvalidRequest(f"the question of prompts[{i}] is {len(question)} characters; the limit is "
                                 f"{limit}", f"prompts.{i}")
        response = split_query(q, p)
        if response is not None and len(text := response_to_text(response, tmpl)) > limit:
            raise InvalidRequest(f"the response in query[{i}] is {len(text)} characters; the limit is "
                                 f"{limit}", f"query.{i}")
    if (body.mode or serving.settings.reward_mode) != "reference":
        return  # labels are only judged in reference mode
    for i, label in enumerate(body.labels or ()):
        if isinstance(label, str) and len(label) > limit:
            raise InvalidRequest(f"labels[{i}] is {len(label)} characters; the limit is {limit}",
                                 f"labels.{i}")
