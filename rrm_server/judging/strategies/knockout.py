"""Knockout: a seeded random bracket (byes when n is not a power of two), each match decided by
the majority of its votes, rounds one after another, matches of a round concurrently.

Tie rule: a match whose valid votes are tied, or all invalid, is settled by a seeded coin flip and
reported as ``decided_by="tiebreak"``; the request's usage counts its failed judgments.
"""

from __future__ import annotations

import asyncio

from rrm_server.judging.bracket import Slot, first_round, next_round, num_rounds
from rrm_server.judging.match import Comparator, MatchResult
from rrm_server.judging.strategies.base import KnockoutScore, RankOutcome, Strategy, StrategyOptions, register
from rrm_server.judging.votes import derive_seed, tiebreak_order


@register
class KnockoutStrategy(Strategy):
    name = "knockout"

    async def run(self, n: int, comparator: Comparator, options: StrategyOptions) -> RankOutcome:
        wins = [0] * n
        byes = [0] * n
        reached = [1] * n  # last round each response took part in
        matches: list[MatchResult] = []
        slots: list[Slot] = first_round(n, derive_seed(options.seed, "bracket"))
        rnd = 1
        while True:
            played = [(a, b) for a, b in slots if b is not None]
            async with asyncio.TaskGroup() as tg:
                tasks = {(a, b): tg.create_task(comparator.compare(a, b, options.votes)) for a, b in played}
            results = {pair: t.result() for pair, t in tasks.items()}
            # Difficulty-aware: every knockout match is decisive; close ones get more votes.
            uncertain = [pair for pair, m in results.items() if options.needs_more(m)]
            if uncertain:
                # Keep the budget's room for the base votes of the rounds still to come.
                later = (n - 1 - len(matches) - len(played)) * options.votes
                async with asyncio.TaskGroup() as tg:
                    more = {pair: tg.create_task(comparator.extend(
                        results[pair], options.adaptive_votes, options.target_confidence, later))  # type: ignore[arg-type]
                        for pair in uncertain}
                results.update({pair: t.result() for pair, t in more.items()})
            winners = []
            for a, b in slots:
                reached[a] = rnd
                if b is None:
                    byes[a] += 1
                    winners.append(a)
                    continue
                reached[b] = rnd
                m = results[(a, b)]
                m.round = rnd
                if m.winner is None:
                    m.winner = (a, b)[derive_seed(options.seed, "tiebreak", a, b) & 1]
                    m.decided_by = "tiebreak"
                wins[m.winner] += 1
                matches.append(m)
                comparator.played(m)
                winners.append(m.winner)
            if len(winners) == 1:
                champion = winners[0]
                break
            slots = next_round(winners)
            rnd += 1

        total = num_rounds(n)
        # Vote share in each response's last match, then a seeded shuffle, orders responses that
        # went out in the same round.
        share = [0.0] * n
        for m in matches:
            valid = m.tally.valid or 1
            share[m.a] = m.tally.first / valid
            share[m.b] = m.tally.second / valid
        position = {i: k for k, i in enumerate(tiebreak_order(n, options.seed))}
        ranking = sorted(range(n), key=lambda i: (i != champion, -reached[i], -wins[i], -share[i], position[i]))
        scores = [KnockoutScore(i, round_reached=reached[i], wins=wins[i], byes=byes[i], champion=i == champion,
                                rounds=total) for i in range(n)]
        return RankOutcome(best=champion, ranking=ranking, scores=scores, matches=matches)
