"""One comparison decided by the majority of its votes."""

from __future__ import annotations

from rrm_server.judging.match import Comparator
from rrm_server.judging.strategies.base import PairwiseScore, RankOutcome, Strategy, StrategyOptions, register


@register
class PairwiseStrategy(Strategy):
    name = "pairwise"

    async def run(self, n: int, comparator: Comparator, options: StrategyOptions) -> RankOutcome:
        match = await comparator.compare(0, 1, options.votes)
        w = match.winner
        if w is None:
            match.decided_by = "no_result" if match.tally.valid == 0 else "draw"
        comparator.played(match)
        ranking = [0, 1] if w in (None, 0) else [1, 0]
        scores = [PairwiseScore(0, match.tally.first), PairwiseScore(1, match.tally.second)]
        return RankOutcome(best=w, ranking=ranking, scores=scores, matches=[match])
