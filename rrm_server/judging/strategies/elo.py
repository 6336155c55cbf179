"""ELO round robin (the RRM paper's): all C(n,2) pairs, online Elo over a seeded shuffle; or a sparse
tournament (``opponents=m``: each response meets m others on a connected graph, rated by
Bradley-Terry, N*m/2 comparisons).

Each match contributes one game: its majority (a tied majority of valid votes is a draw). A match
whose votes are all invalid is no result by default, a draw with ``invalid_matches="draw"``, or a
seeded coin's win with ``invalid_matches="coin"`` (the official ELO script's random winner).
Bradley-Terry (order-independent) is available as ``rating="bradley_terry"``. Exactly equal
ratings are ordered by a seeded shuffle, so no position is favoured.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

from rrm_server.judging.match import Comparator, MatchResult
from rrm_server.judging.pairings import round_robin_pairs, sparse_pairs
from rrm_server.judging.ratings import Game, bradley_terry_ratings, elo_ratings
from rrm_server.judging.strategies.base import EloScore, RankOutcome, Strategy, StrategyOptions, register
from rrm_server.judging.votes import derive_seed, tiebreak_order


@register
class EloStrategy(Strategy):
    name = "elo"

    async def run(self, n: int, comparator: Comparator, options: StrategyOptions) -> RankOutcome:
        pairs = (round_robin_pairs(n) if options.opponents is None
                 else sparse_pairs(n, options.opponents, derive_seed(options.seed, "opponents")))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._played(comparator, comparator.compare(a, b, options.votes)))
                     for a, b in pairs]
        matches = [t.result() for t in tasks]
        if options.adaptive_votes is not None:
            await self._refine(n, matches, comparator, options)
        return self._rate(n, matches, options)

    async def _refine(self, n: int, matches: list[MatchResult], comparator: Comparator,
                      options: StrategyOptions) -> None:
        """Difficulty-aware: extra votes for the uncertain matches that decide the pick, those of
        the current top two, re-rated after each round of top-ups."""
        for _ in range(n):
            ranking = self._rate(n, matches, options).ranking
            top = set(ranking[:2])
            todo = [i for i, m in enumerate(matches) if (m.a in top or m.b in top) and options.needs_more(m)]
            if not todo:
                return
            async with asyncio.TaskGroup() as tg:
                more = {i: tg.create_task(self._played(comparator, comparator.extend(
                    matches[i], options.adaptive_votes, options.target_confidence)))  # type: ignore[arg-type]
                    for i in todo}
            grown = False
            for i, t in more.items():
                grown |= len(t.result().votes) > len(matches[i].votes)
                matches[i] = t.result()
            if not grown:  # budget spent
                return

    @staticmethod
    async def _played(comparator: Comparator, match: Awaitable[MatchResult]) -> MatchResult:
        m = await match
        comparator.played(m)  # as it lands, not when the whole round robin is done
        return m

    def _rate(self, n: int, matches: list[MatchResult], options: StrategyOptions) -> RankOutcome:
        feed = list(range(len(matches)))
        random.Random(derive_seed(options.seed, "elo-feed")).shuffle(feed)
        games = []
        for m in (matches[i] for i in feed):
            if m.tally.valid == 0 and options.invalid_matches == "coin":
                # The official ELO script's rule for an invalid judgment: a random winner (seeded here).
                m.winner = (m.a, m.b)[derive_seed(options.seed, "coin", m.a, m.b) & 1]
                m.decided_by = "coin"
            elif m.winner is None:
                m.decided_by = "draw" if m.tally.valid > 0 or options.invalid_matches == "draw" else "no_result"
            if m.winner is not None:
                games.append(Game(m.a, m.b, 1.0 if m.winner == m.a else 0.0))
            elif m.decided_by == "draw":
                games.append(Game(m.a, m.b, 0.5))

        if options.rating == "bradley_terry" or (options.rating is None and options.opponents is not None):
            ratings = bradley_terry_ratings(n, games)
        else:
            ratings = elo_ratings(n, games)
        position = {i: k for k, i in enumerate(tiebreak_order(n, options.seed))}
        ranking = sorted(range(n), key=lambda i: (-ratings[i], position[i]))
        decisive = any(g.result != 0.5 for g in games)
        return RankOutcome(
            best=ranking[0] if decisive else None,
            ranking=ranking,
            scores=[EloScore(i, ratings[i]) for i in range(n)],
            matches=matches,
        )
