"""Domain results to wire records: the one place a judged request becomes its response."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from rrm_server.judging.match import MatchResult
from rrm_server.judging.strategies import Score
from rrm_server.judging.votes import Outcome, Vote
from rrm_server.prompt.answers import PreparedAnswer
from rrm_server.protocol.judge import (
    AnswerOut,
    MatchOut,
    PairwiseResponse,
    RankResponse,
    TallyOut,
    UsageOut,
    VoteEvent,
    VoteOut,
)
from rrm_server.serving.matches import Event, VoteLanded
from rrm_server.serving.vote import Usage

if TYPE_CHECKING:
    from rrm_server.serving.judge import Judged


def answers_out(answers: Sequence[PreparedAnswer]) -> list[AnswerOut]:
    return [AnswerOut(index=i, status=a.status.value, reasoning_stripped=a.reasoning_stripped,  # type: ignore[arg-type]
                      dropped_tokens=a.dropped_tokens) for i, a in enumerate(answers)]


def usage_out(u: Usage) -> UsageOut:
    out = UsageOut.model_validate(u, from_attributes=True)
    out.exits = dict(sorted(u.exits.items()))
    return out


def score_out(s: Score) -> dict[str, Any]:
    return asdict(s)


def vote_out(v: Vote, a: int, b: int, include_reasoning: bool) -> VoteOut:
    """A vote of the match (a, b), in the caller's indices."""
    j = v.judgment
    return VoteOut(
        index=v.index,
        seed=v.spec.seed,
        shown_order=[b, a] if v.swapped else [a, b],
        verdict=None if j.slot is None else f"Assistant {j.slot}",  # type: ignore[arg-type]
        status=v.outcome.value,
        winner=a if v.outcome is Outcome.first else b if v.outcome is Outcome.second else None,
        invalid_reason=j.reason.value if j.reason else None,
        finish_reason=j.finish_reason,
        prompt_tokens=j.prompt_tokens,
        generated_tokens=j.generated_tokens,
        reasoning=j.output if include_reasoning else None,
        error=j.error,
        source=v.source,
        p_first=v.p_first,
        forced=j.forced,
        exit=j.exit or _derived_exit(j.finish_reason),
    )


def _derived_exit(finish_reason: str | None) -> str | None:
    """A vote cached before ``exit`` was recorded: how it ended, from its finish reason."""
    if finish_reason is None:
        return None  # an engine error: it never thought
    return "budget" if finish_reason == "length" else "natural"


def match_out(m: MatchResult, include_reasoning: bool) -> MatchOut:
    return MatchOut(pair=[m.a, m.b], round=m.round, winner=m.winner, confidence=m.confidence, p_first=m.p_first,
                    decided_by=m.decided_by, position_consistent=m.position_consistent,
                    tally=TallyOut.model_validate(m.tally, from_attributes=True),
                    votes=[vote_out(v, m.a, m.b, include_reasoning) for v in m.votes])


def event_out(e: Event, live: Sequence[int], include_reasoning: bool) -> VoteEvent | MatchOut:
    """A streamed request's event, in the caller's indices (``live``: the judged responses)."""
    if isinstance(e, VoteLanded):
        a, b = live[e.a], live[e.b]
        return VoteEvent(pair=[a, b], vote=vote_out(e.vote, a, b, include_reasoning))
    m = e.match
    winner = None if m.winner is None else live[m.winner]
    return match_out(replace(m, a=live[m.a], b=live[m.b], winner=winner), include_reasoning)


def pairwise_response(j: Judged, model: str, seed: int | None) -> PairwiseResponse:
    match = j.outcome.matches[0]
    out = match_out(match, j.context.include_reasoning)
    return PairwiseResponse(id=j.context.request_id, model=model, seed=seed, winner=j.outcome.best,
                            confidence=out.confidence, p_first=out.p_first, decided_by=out.decided_by,
                            position_consistent=out.position_consistent, tally=out.tally, votes=out.votes,
                            answers=answers_out(j.context.answers), usage=usage_out(j.usage))


def rank_response(j: Judged, model: str, seed: int | None) -> RankResponse:
    o = j.outcome
    return RankResponse(id=j.context.request_id, model=model, seed=seed, method=j.context.strategy,  # type: ignore[arg-type]
                        best=o.best, ranking=o.ranking, scores=[score_out(s) for s in o.scores],
                        matches=[match_out(m, j.context.include_reasoning) for m in o.matches],
                        answers=answers_out(j.context.answers), usage=usage_out(j.usage))
