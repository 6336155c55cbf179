"""Wire schemas of the reward APIs: OpenRLHF's /get_reward and the native batch /v1/rewards."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rrm_server.protocol.judge import AnswerOut, ResponseText, SamplingFields, Text, UsageOut, unicode_text

# OpenRLHF may send empty strings (an empty response); only text that cannot be encoded is refused.
_Str = Annotated[str, AfterValidator(unicode_text)]
# Any JSON; a string is a reference answer the judge reads, so it must be text.
_Label = Annotated[Any, AfterValidator(lambda v: unicode_text(v) if isinstance(v, str) else v)]


class RewardGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # as the judge's requests
    query: Text
    responses: list[ResponseText] = Field(min_length=1, description="May be empty: an empty response (or one "
                                          "whose reasoning never closes) gets the lowest reward, unjudged.")
    method: Literal["elo", "knockout"] = "elo"
    opponents: int | None = Field(None, ge=1, description="ELO: each response meets this many others (sparse "
                                  "tournament); at or above the group's size - 1, all of them.")


class RewardsRequest(SamplingFields):
    model: str | None = None
    groups: list[RewardGroup] = Field(min_length=1, description="Scheduled together: one engine batch.")


class GroupRewards(BaseModel):
    rewards: list[float] = Field(description="Per response: 2 * score - 1, in [-1, 1].")
    scores: list[float] = Field(description="Per response, in [0, 1]: ELO win rate over its valid votes, or the "
                                "share of knockout rounds it survived; 0.5 (flagged neutral) without a result.")
    neutral: list[bool] = Field(description="True where the score is the neutral 0.5 for lack of a judged result.")
    empty: list[bool] = Field(description="True for a degenerate response (empty, or reasoning that never "
                              "closes): reward --empty-response-reward, capped by the group's real answers.")
    ranking: list[int]
    best: int | None
    answers: list[AnswerOut] = Field(description="What the judge read of each response.")
    usage: UsageOut


class RewardsResponse(BaseModel):
    id: str
    object: Literal["rewards"] = "rewards"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    groups: list[GroupRewards]


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward request (unknown extra fields are ignored for forward compatibility)."""

    model_config = ConfigDict(extra="ignore")
    query: list[_Str] = Field(min_length=1, description="Prompt + response, decoded with the chat tokens.")
    prompts: list[_Str] = Field(description="The prompt of each query (its prefix).")
    labels: list[_Label] | None = Field(None, description="Per sample; the reference answer in reference "
                                        "mode.")
    mode: Literal["reference", "group"] | None = Field(None, description="Overrides the server's reward mode.")


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]] = Field(
        description="rrm_neutral (1 = no judged result, neutral reward), rrm_empty (1 = degenerate response: "
        "empty or unclosed reasoning, lowest reward, not judged), rrm_valid_votes, rrm_invalid_votes, "
        "rrm_group_size (group mode).")
