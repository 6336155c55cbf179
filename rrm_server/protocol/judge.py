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
# A response may be empty: an RL policy's sample can be. It is a degenerate answer (see
# prompt/answers.py): it loses to any real answer without an engine call.
ResponseText = Annotated[StrictStr, AfterValidator(unicode_text)]
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    # Strict types too: the schema says boolean or integer, so "cache": 0, "votes": "3" or "seed": true
    # are refused rather than coerced (an integer is still a number: "temperature": 1).
    model_config = ConfigDict(extra="forbid", strict=True)


class AnswerFields(_Strict):
    """What the judge reads of each response."""

    strip_reasoning: Literal["auto", "on", "off"] | None = Field(
        None, description="Remove a response's reasoning block (reasoning_tags) and judge its answer: auto: when "
        "it has one; on: every response is a reasoning policy's (no closing tag = no answer); off: the whole "
        "text. A block that never closes leaves no answer: it loses without a judgment. Unset: the server's "
        "--strip-reasoning (auto).")
    reasoning_tags: list[StrictStr] | None = Field(
        None, min_length=2, max_length=2, description="[opening, closing] tag of the reasoning block; "
        "unset: the server's (<think>, </think>).")
    max_response_tokens: int | None = Field(None, ge=1, description="Judge only the last N tokens of each "
                                            "response (judge's tokenizer); the result says how many were cut.")


class SamplingFields(AnswerFields):
    votes: int = Field(1, ge=1, description="Most independent samples per comparison (distinct seeds).")
    early_stop: bool = Field(True, description="Draw votes in waves and stop once the majority can no "
                             "longer change: the same winner as all votes, for fewer engine calls.")
    min_votes: int | None = Field(None, ge=1, description="With confidence: stop a comparison once it has "
                                  "this many valid votes and its majority is that confident.")
    confidence: float | None = Field(None, gt=0.5, lt=1.0, description="Confidence threshold in (0.5, 1): "
                                     "P(judge prefers the leader | votes), uniform prior.")
    order: Literal["random", "fixed", "both"] | None = Field(
        None, description="random: a seeded coin per vote; fixed: as given; both: votes in swapped pairs, "
        "aggregated position-debiased (each order weighs the same; with verdict_probs the winner is the side "
        "of 1/2 of the mean over both orders of p(first better)). Unset: both when votes >= 2, else random.")
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
                                            "closed, the verdict read from the judge's next-token probabilities). "
                                            "Unset: the server's default (none for RRM checkpoints; the bundled "
                                            "demo model's max_tokens, 128); null: no budget.")
    rescue_invalid: bool | None = Field(None, description="Also force verdicts for judgments that ended without "
                                        "a valid one (truncated by max_tokens, no verdict, malformed). Unset: the "
                                        "server's default (off for RRM checkpoints, on for the bundled demo model).")
    early_exit: bool | None = Field(None, description="Probe each vote's verdict while it thinks (every "
                                    "probe_every tokens and at transition words such as 'Wait') and stop it "
                                    "once p of the leading verdict reaches exit_confidence (exit: early). "
                                    "Unset: the server's --early-exit (off).")
    exit_confidence: float | None = Field(None, gt=0.5, le=1.0, description="Early exit: p of the leading "
                                          "verdict at which a vote stops thinking, in (0.5, 1]. Unset: the "
                                          "server's --exit-confidence (0.9).")
    probe_every: int | None = Field(None, ge=1, description="Early exit: generated tokens between probes. "
                                    "Unset: the server's --probe-every.")
    deadline_s: float | None = Field(None, gt=0, description="Seconds (from the request's arrival) the caller "
                                     "will wait: shortly before, every vote still thinking gets a forced "
                                     "verdict (exit: deadline) and votes not yet started are forced without "
                                     "thinking, so the answer comes in time. Header X-Request-Deadline does "
                                     "the same; the earlier of the two counts.")
    verdict_probs: bool = Field(True, description="Report each vote's p(first response better) from the "
                                "verdict token's log probabilities (one extra one-token engine call per vote).")
    cache: bool = Field(True, description="Serve votes from the comparison cache and store new ones; "
                        "false: compute every vote afresh.")
    verdict_parser: Literal["lenient", "official"] | None = Field(
        None, description="official: the RRM evaluation code's exact semantics (text after the first "
        "</think>, exact 'Assistant 1'); lenient: the judge's own </think> token, whitespace-tolerant. "
        "Unset: the server's --verdict-parser (lenient).")


STREAM = ("Answer with server-sent events: each vote as it lands (event: vote), each match as it is "
          "played (event: match; knockout matches round by round, ELO matches as their votes land), then "
          "the result (event: result) or an error (event: error, the error shape). Closing the connection "
          "aborts the engine work.")


class PairwiseRequest(SamplingFields):
    model: str | None = Field(None, description="Optional; must name the served model if given.")
    query: Text
    responses: list[ResponseText] = Field(min_length=2, max_length=2)
    stream: bool = Field(False, description=STREAM)


class RankRequest(SamplingFields):
    model: str | None = None
    query: Text
    responses: list[ResponseText] = Field(min_length=2)
    stream: bool = Field(False, description=STREAM)
    method: Literal["elo", "knockout"] = "elo"
    rating: Literal["elo", "bradley_terry"] | None = Field(
        None, description="ELO only: online Elo or Bradley-Terry. Unset: elo for a full round robin, "
        "bradley_terry with opponents.")
    invalid_matches: Literal["no_result", "draw", "coin"] = Field(
        "no_result", description="ELO only: what a match with no valid vote counts as; coin: a seeded random "
        "winner (the official ELO script's rule).")
    opponents: int | None = Field(
        None, ge=1, description="ELO only: a sparse tournament; each response meets this many others on a "
        "seeded, balanced, connected graph (about N*opponents/2 comparisons instead of N(N-1)/2), rated by "
        "Bradley-Terry. Must be below the number of responses.")
    adaptive_votes: int | None = Field(
        None, ge=1, description="Difficulty-aware allocation: matches that decide the outcome (every "
        "knockout match; ELO matches of the current top two) and are still below target_confidence get "
        "more votes, up to this many in all.")
    target_confidence: float = Field(0.9, gt=0.5, lt=1.0, description="Confidence an adaptive match aims for.")
    budget_engine_calls: int | None = Field(None, ge=1, description="Adaptive top-ups stop before the request "
                                            "exceeds this many engine calls.")
    budget_tokens: int | None = Field(None, ge=1, description="Adaptive top-ups stop once the request has "
                                      "generated this many tokens.")


class RenderRequest(AnswerFields):
    model: str | None = None
    query: Text
    responses: list[ResponseText] = Field(min_length=2, max_length=2)
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
    forced: bool = Field(False, description="The verdict was read after closing the judge's reasoning: at "
                         "the thinking budget, a rescue, an early exit or a deadline.")
    exit: Literal["natural", "early", "budget", "deadline"] | None = Field(
        None, description="How the judge's thinking ended: natural (it stopped by itself), early (a probe's "
        "verdict reached exit_confidence), budget (max_thinking_tokens or max_tokens), deadline; null for an "
        "engine error.")
    source: Literal["cache", "computed", "coalesced"] = Field(
        "computed", description="cache: stored vote; computed: by this request; coalesced: shared with "
        "an identical comparison in flight.")


class VoteEvent(BaseModel):
    """``event: vote`` of a streamed request."""

    pair: list[int] = Field(description="The match the vote belongs to: [its first response, its second].")
    vote: VoteOut


class AnswerOut(BaseModel):
    index: int
    status: Literal["ok", "empty", "unclosed_reasoning"] = Field(
        description="ok: judged; empty: nothing to judge (after chat tokens and reasoning are removed); "
        "unclosed_reasoning: a reasoning block that never closes. Both lose to any real answer without an "
        "engine call.")
    reasoning_stripped: bool = Field(description="A reasoning block was removed before judging.")
    dropped_tokens: int = Field(description="Leading tokens cut by max_response_tokens.")


DecidedByOut = Literal["majority", "probability", "tiebreak", "draw", "no_result", "coin", "forfeit"]
DECIDED_BY = ("majority: valid votes (balanced over both orders with order=both); probability: mean over both "
              "orders of p(first better); tiebreak: knockout's seeded coin; draw; no_result; coin: ELO's seeded "
              "winner for a match without a valid vote; forfeit: a degenerate answer lost without a judgment.")
POSITION_CONSISTENT = ("Both presentation orders picked the same response; null when not both were shown "
                       "with a valid vote.")


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
    exit_probes: int = Field(0, description="Of those, mid-thought probes spent on early exit.")
    thinking_tokens_saved: int = Field(0, description="Thinking budget left unspent by votes that exited early.")
    exits: dict[str, int] = Field(default_factory=dict, description="Votes computed by this request, by exit.")
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
    p_first: float | None = Field(description="Mean p(responses[0] better) over votes that have one (over both "
                                  "orders, each weighing the same, with order=both).")
    decided_by: DecidedByOut = Field(description=DECIDED_BY)
    position_consistent: bool | None = Field(description=POSITION_CONSISTENT)
    tally: TallyOut = Field(description="first = votes for responses[0], second = for responses[1].")
    votes: list[VoteOut]
    answers: list[AnswerOut] = Field(description="What the judge read of each response.")
    usage: UsageOut


class MatchOut(BaseModel):
    pair: list[int]
    round: int | None = None
    winner: int | None
    confidence: float
    p_first: float | None = Field(description="Mean p(pair[0] better) over votes that have one (over both "
                                  "orders, each weighing the same, with order=both).")
    decided_by: DecidedByOut = Field(description=DECIDED_BY)
    position_consistent: bool | None = Field(description=POSITION_CONSISTENT)
    tally: TallyOut
    votes: list[VoteOut]


class RankResponse(_Result):
    object: Literal["judge.rank"] = "judge.rank"
    method: Literal["elo", "knockout"]
    best: int | None = Field(description="Index of the best response; null when no match had a result.")
    ranking: list[int]
    scores: list[dict[str, Any]] = Field(
        description="Per response: rating (elo); round_reached, wins, byes, champion (knockout); a degenerate "
        "response (see answers) has only index and status, and ranks last.")
    matches: list[MatchOut]
    answers: list[AnswerOut] = Field(description="What the judge read of each response.")
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
    answers: list[AnswerOut] = Field(description="What the judge reads of each response (the prompt holds those "
                                     "texts).")
    judged: bool = Field(description="False when a response is degenerate: such a pair is decided without an "
                         "engine call, and the prompt above is never sent.")
