"""Pairwise, ELO and knockout strategies against a scripted comparator (no engine)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrm_server.judging.comparator import MatchResult, match_from_votes
from rrm_server.judging.strategies import StrategyOptions, get_strategy, strategy_names
from rrm_server.judging.votes import Outcome, Vote, derive_seed
from rrm_server.prompt.verdict import InvalidReason


@dataclass
class OracleComparator:
    """Votes for the higher quality with probability ``accuracy``; ``invalid`` share of votes fail."""

    quality: list[float]
    accuracy: float = 1.0
    invalid: float = 0.0
    seed: int = 0
    calls: list[tuple[int, int]] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult:
        from rrm_server.judging.policy import majority_confidence

        votes = list(match.votes)
        while len(votes) < max_votes:
            t = match_from_votes(match.a, match.b, votes)
            if majority_confidence(t.tally.first, t.tally.second) >= target_confidence:
                break
            votes += (await self.compare(match.a, match.b, len(votes) + 1)).votes[len(votes):]
        out = match_from_votes(match.a, match.b, votes)
        out.round = match.round
        return out

    async def compare(self, a: int, b: int, votes: int) -> MatchResult:
        self.calls.append((a, b))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        await asyncio.sleep(0)
        self.concurrent -= 1
        out = []
        for i in range(votes):
            rnd = random.Random(derive_seed(self.seed, a, b, i))
            if rnd.random() < self.invalid:
                out.append(Vote(i, 0, False, Outcome.invalid, reason=InvalidReason.truncated))
                continue
            a_better = self.quality[a] > self.quality[b]
            correct = rnd.random() < self.accuracy
            out.append(Vote(i, 0, False, Outcome.first if a_better == correct else Outcome.second))
        return match_from_votes(a, b, out)


def run(name, comparator, n, **kw):
    return asyncio.run(get_strategy(name).run(n, comparator, StrategyOptions(**kw)))


def test_registry():
    assert strategy_names() == ["elo", "knockout", "pairwise"]
    with pytest.raises(KeyError):
        get_strategy("swiss")


def test_pairwise_majority_and_ties():
    out = run("pairwise", OracleComparator([0.0, 1.0]), 2, votes=3)
    assert out.best == 1 and out.ranking == [1, 0]
    out = run("pairwise", OracleComparator([0.0, 1.0], invalid=1.0), 2, votes=3)
    assert out.best is None and out.matches[0].decided_by == "no_result"


@settings(deadline=None, max_examples=60)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**31), data=st.data())
def test_perfect_judge_elects_the_best_in_elo_and_knockout(n, seed, data):
    quality = data.draw(st.permutations(list(range(n))))
    best = quality.index(n - 1)
    for method in ("elo", "knockout"):
        cmp = OracleComparator(list(map(float, quality)))
        out = run(method, cmp, n, votes=1, seed=seed)
        assert out.best == best
        assert out.ranking[0] == best and sorted(out.ranking) == list(range(n))
        assert len(out.scores) == n


@settings(deadline=None, max_examples=40)
@given(n=st.integers(2, 10), seed=st.integers(0, 2**31))
def test_match_counts(n, seed):
    cmp = OracleComparator([float(i) for i in range(n)])
    elo = run("elo", cmp, n, seed=seed)
    assert sorted(cmp.calls) == list(combinations(range(n), 2)) and len(elo.matches) == n * (n - 1) // 2
    cmp = OracleComparator([float(i) for i in range(n)])
    ko = run("knockout", cmp, n, seed=seed)
    assert len(ko.matches) == len(cmp.calls) == n - 1
    assert sum(s["champion"] for s in ko.scores) == 1


def test_elo_plays_all_pairs_concurrently():
    cmp = OracleComparator([float(i) for i in range(6)])
    run("elo", cmp, 6)
    assert cmp.max_concurrent == 15


def test_knockout_rounds_run_in_order_with_matches_concurrent():
    cmp = OracleComparator([float(i) for i in range(8)])
    out = run("knockout", cmp, 8, seed=3)
    assert [m.round for m in out.matches] == [1, 1, 1, 1, 2, 2, 3]
    assert cmp.max_concurrent == 4
    # Winners of neighbouring first-round matches meet in round two.
    r1 = [m.winner for m in out.matches[:4]]
    assert [sorted((m.a, m.b)) for m in out.matches[4:6]] == [sorted(r1[:2]), sorted(r1[2:])]


@settings(deadline=None, max_examples=40)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**31), acc=st.floats(0.5, 1.0), inv=st.floats(0, 0.5))
def test_same_seed_same_result(n, seed, acc, inv):
    q = [float(i) for i in range(n)]
    for method in ("elo", "knockout"):
        a = run(method, OracleComparator(q, acc, inv, seed), n, seed=seed, votes=3)
        b = run(method, OracleComparator(q, acc, inv, seed), n, seed=seed, votes=3)
        assert (a.best, a.ranking, a.scores) == (b.best, b.ranking, b.scores)


def test_knockout_tie_rule_is_a_reported_seeded_coin():
    out = run("knockout", OracleComparator([0.0] * 4, invalid=1.0), 4, seed=5, votes=2)
    assert all(m.decided_by == "tiebreak" for m in out.matches)
    again = run("knockout", OracleComparator([0.0] * 4, invalid=1.0), 4, seed=5, votes=2)
    assert again.best == out.best
    champions = {run("knockout", OracleComparator([0.0] * 4, invalid=1.0), 4, seed=s).best for s in range(30)}
    assert len(champions) > 1  # a coin, not a fixed preference


def test_elo_invalid_matches_no_result_or_draw():
    cmp = OracleComparator([0.0, 1.0, 2.0], invalid=1.0)
    out = run("elo", cmp, 3)
    assert out.best is None
    assert all(m.decided_by == "no_result" for m in out.matches)
    assert [s["rating"] for s in out.scores] == [1000.0] * 3
    out = run("elo", OracleComparator([0.0, 1.0, 2.0], invalid=1.0), 3, invalid_matches="draw")
    assert all(m.decided_by == "draw" for m in out.matches)
    assert out.best is None


def test_elo_bradley_terry_option():
    out = run("elo", OracleComparator([0.0, 3.0, 1.0, 2.0]), 4, rating="bradley_terry")
    assert out.ranking == [1, 3, 2, 0]


def test_exact_rating_ties_do_not_favour_low_indices():
    # All matches invalid-as-draw: every rating equal; the order must vary with the seed.
    firsts = {run("elo", OracleComparator([0.0] * 4, invalid=1.0), 4, seed=s, invalid_matches="draw").ranking[0]
              for s in range(40)}
    assert len(firsts) > 2


def test_adaptive_knockout_tops_up_only_close_matches():
    cmp = OracleComparator([float(i) for i in range(8)], accuracy=0.7, seed=1)
    base = run("knockout", cmp, 8, votes=3, seed=2)
    cmp2 = OracleComparator([float(i) for i in range(8)], accuracy=0.7, seed=1)
    adaptive = run("knockout", cmp2, 8, votes=3, seed=2, adaptive_votes=9, target_confidence=0.9)
    for m in adaptive.matches:
        assert len(m.votes) >= 3
        if len(m.votes) > 3:  # only matches that were uncertain after their 3 votes got more
            assert m.confidence >= 0.9 or len(m.votes) == 9
    assert any(len(m.votes) > 3 for m in adaptive.matches)
    assert sum(len(m.votes) for m in adaptive.matches) > sum(len(m.votes) for m in base.matches)


def test_adaptive_elo_spends_on_the_top():
    cmp = OracleComparator([float(i) for i in range(6)], accuracy=0.65, seed=4)
    out = run("elo", cmp, 6, votes=1, seed=4, adaptive_votes=7, target_confidence=0.85)
    # Every match of the final top two is confident or has all its votes ...
    top = set(out.ranking[:2])
    for m in out.matches:
        if m.a in top or m.b in top:
            assert m.confidence >= 0.85 or len(m.votes) == 7
    # ... while matches that never touched the top kept their single vote.
    assert any(len(m.votes) == 1 for m in out.matches)
    assert any(len(m.votes) > 1 for m in out.matches)
