"""A match between two responses and what strategies ask of whoever judges it. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rrm_server.judging.policy import majority_confidence
from rrm_server.judging.votes import Outcome, Tally, Vote, decide, tally

# majority: valid votes (balanced over both orders with order=both); probability: the mean over both
# orders of p(first better); tiebreak: knockout's seeded coin on a tie; coin: ELO's seeded coin for a
# match without a valid vote (invalid_matches=coin, the official script's random winner); forfeit: a
# degenerate answer (empty, or reasoning that never closes) lost without a judgment.
DecidedBy = Literal["majority", "probability", "tiebreak", "draw", "no_result", "coin", "forfeit"]


@dataclass
class MatchResult:
    a: int
    b: int
    votes: list[Vote]
    tally: Tally
    winner: int | None  # a, b, or None (tied / all invalid) before any strategy rule
    round: int | None = None
    decided_by: DecidedBy = "majority"
    position_consistent: bool | None = None  # both orders picked the same response (None: not both shown)
    p_first: float | None = None  # p(a better): mean over votes, or over orders when debiased

    @property
    def confidence(self) -> float:
        """From the vote counts; a match whose two orders disagree is a coin flip, whatever the counts."""
        if self.position_consistent is False:
            return 0.5
        return majority_confidence(self.tally.first, self.tally.second)


class Comparator(Protocol):
    """What strategies need: judge responses a and b with up to k votes (early-stopped), and add
    votes to an uncertain match while the request's budget lasts."""

    async def compare(self, a: int, b: int, votes: int) -> MatchResult: ...

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult: ...

    def played(self, match: MatchResult) -> None:
        """A match has its result (a knockout's with its round and tiebreak; an ELO match as its
        votes land, again if it gets more): streamed requests report it as it happens."""


def counts(votes: Sequence[Vote]) -> tuple[int, int]:
    """(votes for the pair's first response, votes for its second)."""
    return (sum(v.outcome is Outcome.first for v in votes), sum(v.outcome is Outcome.second for v in votes))


def match_from_votes(a: int, b: int, votes: list[Vote], debias: bool = False) -> MatchResult:
    d = decide(votes, debias)
    return MatchResult(a=a, b=b, votes=votes, tally=tally(votes), winner=None if d.winner is None else (a, b)[d.winner],
                       decided_by=d.by, position_consistent=d.position_consistent, p_first=d.p_first)
