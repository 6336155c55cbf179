"""Wire schemas of the judging API (also the Python API's request and result types)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr


def unicode_text(v: str) -> str:
    """JSON can escape a lone surrogate ("\\ud800"): valid JSON, but no character, so no UTF-8 and no
    tokens. Reject it here, naming the field, rather than fail in the tokenizer or a hash."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"contains a lone surrogate (U+{ord(v[e.start]):04X} at character {e.start}), "
                         "which is not text; send valid Unicode") from None
    return v


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty or whitespace only")
    return unicode_text(v)


# The schema says what the validator enforces: at least one non-whitespace character.
Text = Annotated[StrictStr, AfterValidator(_not_blank),
                 Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})]
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    # Strict types too: the schema says boolean or integer, so "cache": 0, "votes": "3" or "seed": true
    # are refused rather than coerced (an integer is still a number: "temperature": 1).
    model_config = ConfigDict(extra="forbid", strict=True)


class SamplingFields(_Strict):
    votes: int = Field(1, ge=1, description="Most independent samples per comparison (distinct seeds).")
    early_stop: bool = Field(True, description="Draw votes in waves and stop once the majority can no "
                             "longer change: the same winner as all votes, for fewer engine calls.")
    min_votes: int | None = Field(None, ge=1, description="With confidence: stop a comparison once it has "
                                  "this many valid votes and its majority is that confident.")
    confidence: float | None = Field(None, gt=0.5, lt=1.0, description="Confidence threshold in (0.5, 1): "
                                     "P(judge prefers the leader | votes), uniform prior.")
    order: Literal["random", "fixed", "both"] = Field(
        "random", description="random: a seeded coin per vote; fixed: as given; both: half the votes each way.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Vote seeds derive from this seed and the "
                             "compared texts: the same comparison with the same seed is the same vote (and "
                             "a cache hit). Unset: seed 0. Pass a new seed for fresh samples.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="Default 0.6 (RRM model card).")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Default 1.0.")
    max_tokens: int | None = Field(None, ge=1, description="Per judgment; default 8192 (RRM), "
                                   "small for the bundled demo model.")
    include_reasoning: bool = Field(False, description="Return each vote's generated text.")
    max_thinking_tokens: int | None = Field(None, ge=1, description="Thinking budget per judgment: a judgment "
                                            "that reaches it without a verdict gets a forced one (its reasoning "
                                            "closed, the verdict read from the judge's next-token probabilities).")
    rescue_invalid: bool = Field(False, description="Also force verdicts for judgments that ended without a "
                                 "valid one (truncated by max_tokens, no verdict, malformed).")
    verdict_probs: bool = Field(True, description="Report each vote's p(first response better) from the "
                                "verdict token's log probabilities (one extra one-token engine call per vote).")
    cache: bool = Field(True, description="Serve votes from the comparison cache and store new ones; "
                        "false: compute every vote afresh.")


class PairwiseRequest(SamplingFields):
    model: str | None = Field(None, description="Optional; must name the served model if given.")
    query: Text
    responses: list[Text] = Field(min_length=2, max_length=2)


class RankRequest(SamplingFields):
    model: str | None = None
    query: Text
    responses: list[Text] = Field(min_length=2)
    method: Literal["elo", "knockout"] = "elo"
    rating: Literal["elo", "bradley_terry"] = Field("elo", description="ELO only: online Elo or Bradley-Terry.")
    invalid_matches: Literal["no_result", "draw"] = Field(
        "no_result", description="ELO only: what a match with no valid vote counts as.")
    adaptive_votes: int | None = Field(
        None, ge=1, description="Difficulty-aware allocation: matches that decide the outcome (every "
        "knockout match; ELO matches of the current top two) and are still below target_confidence get "
        "more votes, up to this many in all.")
    target_confidence: float = Field(0.9, gt=0.5, lt=1.0, description="Confidence an adaptive match aims for.")
    budget_engine_calls: int | None = Field(None, ge=1, description="Adaptive top-ups stop before the request "
                                            "exceeds this many engine calls.")
    budget_tokens: int | None = Field(None, ge=1, description="Adaptive top-ups stop once the request has "
                                      "generated this many tokens.")


class RenderRequest(_Strict):
    model: str | None = None
    query: Text
    responses: list[Text] = Field(min_length=2, max_length=2)
    order: Literal["fixed", "swapped"] = Field("fixed", description="swapped: responses[1] shown as Assistant 1.")


class VoteOut(BaseModel):
    index: int
    seed: int
    shown_order: list[int] = Field(description="Response indices as shown: [Assistant 1, Assistant 2].")
    verdict: Literal["Assistant 1", "Assistant 2"] | None = Field(description="What the judge answered.")
    status: Literal["first", "second", "invalid"] = Field(
        description="first: the match's first response won; second: its second; invalid: see invalid_reason.")
    winner: int | None = Field(description="Index of the winning response; null if invalid.")
    invalid_reason: Literal["truncated", "no_verdict", "malformed", "engine_error"] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    reasoning: str | None = None
    error: str | None = None
    p_first: float | None = Field(None, description="p(this match's first response is better) from the "
                                  "judge's verdict probabilities; null when unavailable.")
    forced: bool = Field(False, description="The verdict was forced after the thinking budget (or rescue).")
    source: Literal["cache", "computed", "coalesced"] = Field(
        "computed", description="cache: stored vote; computed: by this request; coalesced: shared with "
        "an identical comparison in flight.")


class TallyOut(BaseModel):
    first: int
    second: int
    invalid: int
    invalid_reasons: dict[str, int] = Field(default_factory=dict)


class CacheUsageOut(BaseModel):
    status: Literal["ok", "degraded", "off"] = Field(
        description="degraded: the cache backend failed during this request and was bypassed.")
    hits: int
    misses: int
    coalesced: int
    errors: int


class UsageOut(BaseModel):
    prompt_tokens: int = Field(description="Prompt tokens of the engine calls this request made.")
    generated_tokens: int
    cached_prompt_tokens: int = Field(description="Prompt tokens served from vLLM's prefix cache.")
    engine_calls: int
    failed_judgments: int = Field(description="Invalid votes in this result, whatever their source.")
    votes_used: int
    votes_saved: int = Field(description="Votes allowed by `votes` that early stopping did not need.")
    votes_extra: int = Field(0, description="Votes beyond `votes` spent on uncertain matches (adaptive).")
    forced_verdicts: int
    probe_calls: int = Field(description="One-token engine calls that read verdict probabilities.")
    cache: CacheUsageOut


class _Result(BaseModel):
    id: str
    object: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    seed: int | None


class PairwiseResponse(_Result):
    object: Literal["judge.pairwise"] = "judge.pairwise"
    winner: int | None = Field(description="0 or 1; null when tied or every vote invalid.")
    confidence: float = Field(description="P(the judge prefers the majority's pick | votes); 0.5 on a tie.")
    p_first: float | None = Field(description="Mean p(responses[0] better) over votes that have one.")
    tally: TallyOut = Field(description="first = votes for responses[0], second = for responses[1].")
    votes: list[VoteOut]
    usage: UsageOut


class MatchOut(BaseModel):
    pair: list[int]
    round: int | None = None
    winner: int | None
    confidence: float
    p_first: float | None = Field(description="Mean p(pair[0] better) over votes that have one.")
    decided_by: Literal["majority", "tiebreak", "draw", "no_result"]
    tally: TallyOut
    votes: list[VoteOut]


class RankResponse(_Result):
    object: Literal["judge.rank"] = "judge.rank"
    method: Literal["elo", "knockout"]
    best: int | None = Field(description="Index of the best response; null when no match had a result.")
    ranking: list[int]
    scores: list[dict[str, Any]] = Field(
        description="Per response: rating (elo); round_reached, wins, byes, champion (knockout).")
    matches: list[MatchOut]
    usage: UsageOut


class RenderResponse(BaseModel):
    object: Literal["judge.render"] = "judge.render"
    model: str
    shown_order: list[int]
    prompt_text: str
    prompt_token_ids: list[int]
    num_prompt_tokens: int
    opens_reasoning: bool = Field(description="The template opens a think block for the judge.")
    prompt_version: str
