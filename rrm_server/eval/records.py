"""What one finished item looks like in results.jsonl, and how it is built from API results (pure).

Everything is stated in terms of the item's own responses ``a`` and ``b``, whatever order they
were sent in, so the two presentation orders of ``--both-orders`` compare directly.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from rrm_server.eval.data import Label
from rrm_server.protocol.judge import PairwiseResponse, RankResponse, UsageOut

# a / b: that response won; tie: valid votes split evenly; invalid: no valid vote at all (every vote
# failed, or the request itself was refused).
Pick = Literal["a", "b", "tie", "invalid"]


class Judgment(BaseModel):
    """One pairwise request (all its votes) for one presentation of the pair."""

    swapped: bool = Field(False, description="Sent as responses=[b, a].")
    order: str = Field(description="The API's `order` field of the request.")
    pick: Pick
    votes_a: int = 0
    votes_b: int = 0
    invalid_votes: int = 0
    invalid_reasons: dict[str, int] = Field(default_factory=dict,
                                            description="Per vote: the API's invalid_reason.")
    reason: str | None = Field(None, description="Why the judgment is invalid: its votes' most common "
                               "invalid_reason, or the request's error type (e.g. context_length_exceeded).")
    slot1_votes: int = Field(0, description="Valid votes for whichever response was shown as Assistant 1.")
    slot2_votes: int = 0
    p_a: float | None = Field(None, description="Mean p(a better) over votes that report one.")
    prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed_request(self) -> bool:
        return self.error is not None


class PairRecord(BaseModel):
    id: str
    subset: str
    label: Label
    judgments: list[Judgment]
    pick: Pick = Field(description="All judgments' valid votes pooled (see metrics.pool_pick).")
    correct: bool = Field(description="pick == label; an invalid pick is never correct.")


class RankJudgment(BaseModel):
    """One /v1/judge/rank request of a best-of-N question."""

    method: str
    best: int | None = None
    ranking: list[int] = Field(default_factory=list)
    decided_by: dict[str, int] = Field(default_factory=dict, description="Matches by how they were decided.")
    valid_votes: int = 0
    invalid_votes: int = 0
    invalid_reasons: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    seconds: float = 0.0
    reason: str | None = Field(None, description="The request's error type when it was refused.")
    error: str | None = None


class BonRecord(BaseModel):
    id: str
    correct: list[bool]
    methods: dict[str, RankJudgment]


# -- builders ------------------------------------------------------------------------------------
def vote_pick(votes_a: int, votes_b: int) -> Pick:
    if votes_a > votes_b:
        return "a"
    if votes_b > votes_a:
        return "b"
    return "tie" if votes_a else "invalid"


def main_reason(reasons: dict[str, int]) -> str | None:
    """The most common reason; ties go to the alphabetically first, so the choice is stable."""
    if not reasons:
        return None
    return min(reasons, key=lambda r: (-reasons[r], r))


def judgment_from_pairwise(res: PairwiseResponse, *, swapped: bool, order: str, seconds: float) -> Judgment:
    t = res.tally  # first/second = votes for responses[0]/[1] as sent
    votes_a, votes_b = (t.second, t.first) if swapped else (t.first, t.second)
    valid = [v for v in res.votes if v.status != "invalid"]
    pick = vote_pick(votes_a, votes_b)
    p_a = None if res.p_first is None else (1.0 - res.p_first if swapped else res.p_first)
    return Judgment(
        swapped=swapped, order=order, pick=pick, votes_a=votes_a, votes_b=votes_b, invalid_votes=t.invalid,
        invalid_reasons=dict(t.invalid_reasons),
        reason=(main_reason(t.invalid_reasons) or "no_votes") if pick == "invalid" else None,
        slot1_votes=sum(v.verdict == "Assistant 1" for v in valid),
        slot2_votes=sum(v.verdict == "Assistant 2" for v in valid),
        p_a=p_a, seconds=seconds, **_usage(res.usage),
    )


def failed_judgment(reason: str, error: str, *, swapped: bool, order: str, seconds: float = 0.0) -> Judgment:
    return Judgment(swapped=swapped, order=order, pick="invalid", reason=reason, error=error, seconds=seconds)


def rank_judgment(res: RankResponse, *, seconds: float) -> RankJudgment:
    reasons: Counter[str] = Counter()
    valid = invalid = 0
    for m in res.matches:
        reasons.update(m.tally.invalid_reasons)
        valid += m.tally.first + m.tally.second
        invalid += m.tally.invalid
    return RankJudgment(method=res.method, best=res.best, ranking=res.ranking,
                        decided_by=dict(Counter(m.decided_by for m in res.matches)), valid_votes=valid,
                        invalid_votes=invalid, invalid_reasons=dict(reasons), seconds=seconds,
                        **_usage(res.usage))


def _usage(u: UsageOut) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "generated_tokens": u.generated_tokens,
            "engine_calls": u.engine_calls}
