"""Group collection for one-sample-per-request traffic."""

from __future__ import annotations

import asyncio

from rrm_server.judging.strategies import KnockoutScore
from rrm_server.rewards.groups import GroupCollector, SampleScore
from rrm_server.rewards.scoring import knockout_group_scores, reward_from_score, round_robin_scores, win_rate


def ranker(delay: float = 0.0):  # type: ignore[no-untyped-def]
    calls: list[list[str]] = []

    async def rank(question: str, responses: list[str]) -> list[SampleScore]:
        calls.append(list(responses))
        await asyncio.sleep(delay)
        return [SampleScore(len(r) / 10, False, "ok", len(responses)) for r in responses]

    return rank, calls


async def test_full_group_ranks_once_and_answers_everyone():
    rank, calls = ranker()
    g = GroupCollector(rank, group_size=4, wait=5, deadline=5)
    out = await asyncio.gather(*(g.submit("p", "q", "x" * i) for i in range(1, 5)))
    assert len(calls) == 1 and sorted(calls[0]) == sorted("x" * i for i in range(1, 5))
    assert [s.score for s in out] == [0.1, 0.2, 0.3, 0.4]


async def test_duplicates_join_their_original_before_and_after():
    rank, calls = ranker(0.05)
    g = GroupCollector(rank, group_size=3, wait=5, deadline=5)
    # Identical siblings share a slot and count towards the group size (3 arrivals close it).
    out = await asyncio.gather(g.submit("p", "q", "a"), g.submit("p", "q", "a"), g.submit("p", "q", "bb"))
    assert len(calls) == 1 and calls[0] == ["a", "bb"]
    assert out[0] == out[1]
    again = await g.submit("p", "q", "bb")  # a retry after the answer went out
    assert again == out[2] and len(calls) == 1
    assert (await g.submit("p", "q", "a")) == out[0] and len(calls) == 1


async def test_wait_limit_ranks_what_arrived_and_a_lone_sample_goes_to_the_ranker():
    rank, calls = ranker()
    g = GroupCollector(rank, group_size=8, wait=0.1, deadline=5)
    out = await asyncio.gather(g.submit("p", "q", "a"), g.submit("p", "q", "bb"))
    assert len(calls) == 1 and [s.group_size for s in out] == [2, 2]
    # A group of one is scored by the ranker too (alone, or degenerate: RewardServing decides).
    alone = await g.submit("other", "q", "zzz")
    assert calls[-1] == ["zzz"] and alone.score == 0.3 and alone.group_size == 1


async def test_deadline_gives_flagged_neutral_scores():
    rank, _ = ranker(delay=1.0)
    g = GroupCollector(rank, group_size=2, wait=5, deadline=0.1)
    out = await asyncio.gather(g.submit("p", "q", "a"), g.submit("p", "q", "b"))
    assert all(s.neutral and s.reason == "deadline" and s.score == 0.5 for s in out)


def test_scores():
    assert win_rate(3, 1) == 0.75 and win_rate(0, 0) is None
    assert reward_from_score(0.75) == 0.5 and reward_from_score(0.5) == 0.0
    assert round_robin_scores(3, [(0, 1, 2, 0), (0, 2, 1, 1), (1, 2, 0, 0)]) == [0.75, 0.0, 0.5]
    assert round_robin_scores(2, [(0, 1, 0, 0)]) == [None, None]
    ko = knockout_group_scores([KnockoutScore(0, rounds=2, champion=True, round_reached=2, wins=2, byes=0),
                                KnockoutScore(1, rounds=2, champion=False, round_reached=2, wins=1, byes=0),
                                KnockoutScore(2, rounds=2, champion=False, round_reached=1, wins=0, byes=0)])
    assert ko == [1.0, 0.5, 0.0]
