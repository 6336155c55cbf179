"""Pairwise, ELO and knockout strategies against a scripted comparator (no engine)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrm_server.judging.match import MatchResult, match_from_votes
from rrm_server.judging.policy import majority_confidence
from rrm_server.judging.strategies import RankOutcome, StrategyOptions, get_strategy, strategy_names
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
    reported: list[MatchResult] = field(default_factory=list)  # played(), in order

    def played(self, match: MatchResult) -> None:
        self.reported.append(match)

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
                out.append(Vote.of(i, False, Outcome.invalid, reason=InvalidReason.truncated))
                continue
            a_better = self.quality[a] > self.quality[b]
            correct = rnd.random() < self.accuracy
            out.append(Vote.of(i, False, Outcome.first if a_better == correct else Outcome.second))
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
    assert sum(s.champion for s in ko.scores) == 1


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
    assert [s.rating for s in out.scores] == [1000.0] * 3
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


# -- difficulty-aware allocation (adaptive_votes) ------------------------------------------------
# The judge below has a known accuracy per pair; the comparator draws its votes honestly, in order,
# and records what the strategy asked for. The assertions are about the strategy: which matches it
# tops up, with what cap and reserve, and which ranking it derives from the votes it ends up with.
Pair = tuple[int, int]


def key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


@dataclass
class Judge:
    """Vote k on a pair favours the truly better response with probability 1 - difficulty/2
    (difficulty 0: always right, 1: a coin), seeded per (pair, k); ``scripts`` fixes a pair's
    winners vote by vote (the last one repeats)."""

    quality: list[float]
    difficulty: dict[Pair, float] = field(default_factory=dict)  # by key(a, b); absent: 0
    scripts: dict[Pair, list[int]] = field(default_factory=dict)
    invalid: float = 0.0
    seed: int = 0

    def winner(self, a: int, b: int, k: int) -> int | None:
        x, y = key(a, b)
        if (x, y) in self.scripts:
            script = self.scripts[(x, y)]
            return script[min(k, len(script) - 1)]
        rnd = random.Random(derive_seed(self.seed, "judge", x, y, k))
        if rnd.random() < self.invalid:
            return None
        better, worse = (x, y) if self.quality[x] > self.quality[y] else (y, x)
        return worse if rnd.random() < self.difficulty.get((x, y), 0.0) / 2 else better

    def votes(self, a: int, b: int, k: int) -> list[Vote]:
        out = []
        for i in range(k):
            w = self.winner(a, b, i)
            if w is None:
                out.append(Vote.of(i, False, Outcome.invalid, reason=InvalidReason.truncated))
            else:
                out.append(Vote.of(i, False, Outcome.first if w == a else Outcome.second))
        return out

    def confidence(self, a: int, b: int, k: int) -> float:
        """Of the pair's first k votes, from the counts alone (what MatchResult.confidence is)."""
        ws = [self.winner(a, b, i) for i in range(k)]
        return majority_confidence(ws.count(a), ws.count(b))


@dataclass(frozen=True)
class ExtendCall:
    pair: Pair
    had: int  # votes the match had when the strategy asked for more
    confidence: float
    max_votes: int
    target: float
    reserve: int
    lengths: dict[Pair, int]  # every match's votes at that moment


@dataclass
class JudgeComparator:
    """The Comparator protocol on a Judge: ``compare`` draws the first k votes; ``extend`` adds the
    next ones until the match is confident, has ``max_votes``, or the request's ``budget`` (engine
    calls, base votes included) could no longer keep ``reserve`` calls back."""

    judge: Judge
    budget: int | None = None
    spent: int = 0
    lengths: dict[Pair, int] = field(default_factory=dict)
    extends: list[ExtendCall] = field(default_factory=list)

    def played(self, match: MatchResult) -> None:
        return None

    async def compare(self, a: int, b: int, votes: int) -> MatchResult:
        self.spent += votes
        self.lengths[key(a, b)] = votes
        return match_from_votes(a, b, self.judge.votes(a, b, votes))

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult:
        a, b = match.a, match.b
        self.extends.append(ExtendCall(key(a, b), len(match.votes), match.confidence, max_votes,
                                       target_confidence, reserve, dict(self.lengths)))
        await asyncio.sleep(0)  # concurrent top-ups: all of a round are asked for before any answers
        k = len(match.votes)
        while k < max_votes and self.judge.confidence(a, b, k) < target_confidence:
            if self.budget is not None and self.spent + 1 + reserve > self.budget:
                break
            self.spent += 1
            k += 1
        self.lengths[key(a, b)] = k
        out = match_from_votes(a, b, self.judge.votes(a, b, k))
        out.round = match.round
        return out


@dataclass
class Replay:
    """The judge's first ``lengths[pair]`` votes for each pair, never more: a strategy run without
    adaptive votes on this gives the ranking that those votes imply."""

    judge: Judge
    lengths: dict[Pair, int]

    def played(self, match: MatchResult) -> None:
        return None

    async def compare(self, a: int, b: int, votes: int) -> MatchResult:
        return match_from_votes(a, b, self.judge.votes(a, b, self.lengths[key(a, b)]))

    async def extend(self, match: MatchResult, max_votes: int, target_confidence: float,
                     reserve: int = 0) -> MatchResult:
        raise AssertionError("a replay is never adaptive")


def implied(method: str, judge: Judge, lengths: dict[Pair, int], n: int, **kw) -> RankOutcome:
    return run(method, Replay(judge, lengths), n, **kw)


def difficulties(data, n: int) -> dict[Pair, float]:  # type: ignore[no-untyped-def]
    pairs = list(combinations(range(n), 2))
    return dict(zip(pairs, data.draw(st.lists(st.floats(0, 1), min_size=len(pairs), max_size=len(pairs)))))


def outcomes(m: MatchResult) -> list[Outcome]:
    return [v.outcome for v in m.votes]


def test_needs_more():
    close = match_from_votes(0, 1, Judge([0.0, 1.0], scripts={(0, 1): [1, 0]}).votes(0, 1, 2))
    sure = match_from_votes(0, 1, Judge([0.0, 1.0]).votes(0, 1, 3))
    assert (close.confidence, sure.confidence) == (0.5, 0.9375)
    assert not StrategyOptions(votes=2).needs_more(close)  # not adaptive
    assert StrategyOptions(votes=2, adaptive_votes=3, target_confidence=0.9).needs_more(close)
    assert not StrategyOptions(votes=2, adaptive_votes=2, target_confidence=0.9).needs_more(close)  # capped
    assert not StrategyOptions(votes=3, adaptive_votes=9, target_confidence=0.9).needs_more(sure)
    assert not StrategyOptions(votes=3, adaptive_votes=9, target_confidence=0.9375).needs_more(sure)  # met
    assert StrategyOptions(votes=3, adaptive_votes=9, target_confidence=0.95).needs_more(sure)


def test_adaptive_knockout_lets_extra_votes_overturn_a_first_vote():
    # Response 3 is the best, but the first vote of each of its matches goes to its opponent.
    judge = Judge([0.0, 1.0, 2.0, 3.0], scripts={(i, 3): [i, 3, 3, 3, 3] for i in range(3)})
    fixed = run("knockout", JudgeComparator(judge), 4, votes=1, seed=1)
    assert fixed.best != 3 and all(len(m.votes) == 1 for m in fixed.matches)
    cmp = JudgeComparator(judge)
    out = run("knockout", cmp, 4, votes=1, seed=1, adaptive_votes=5, target_confidence=0.8)
    assert out.best == 3 and out.ranking[0] == 3
    for m in out.matches:
        # 3-1 for response 3 is the first count at 0.8 (0.8125); 2-0 (0.875) settles the easy pairs.
        assert len(m.votes) == (4 if 3 in (m.a, m.b) else 2)
        assert m.winner == (3 if 3 in (m.a, m.b) else max(m.a, m.b)) and m.decided_by == "majority"
    assert out.ranking == implied("knockout", judge, cmp.lengths, 4, votes=1, seed=1).ranking


def test_adaptive_knockout_keeps_the_base_votes_of_later_rounds():
    # Every pair is a coin: every match wants the 9 votes it may have, more than the budget holds.
    n, budget = 8, 13  # 7 base votes (one per match) and 6 extra
    judge = Judge([float(i) for i in range(n)], {p: 1.0 for p in combinations(range(n), 2)}, seed=3)
    unlimited = JudgeComparator(judge)
    run("knockout", unlimited, n, votes=1, seed=2, adaptive_votes=9, target_confidence=0.95)
    assert unlimited.spent > budget + 3  # round one alone could spend the whole budget
    cmp = JudgeComparator(judge, budget=budget)
    out = run("knockout", cmp, n, votes=1, seed=2, adaptive_votes=9, target_confidence=0.95)
    assert [m.round for m in out.matches] == [1, 1, 1, 1, 2, 2, 3]
    rounds = {key(m.a, m.b): m.round for m in out.matches}
    # Round one keeps the base votes of rounds two and three (3 matches), round two those of the final.
    assert {rounds[c.pair]: c.reserve for c in cmp.extends} == {1: 3, 2: 1, 3: 0}
    assert cmp.spent == sum(len(m.votes) for m in out.matches) <= budget
    assert all(len(m.votes) >= 1 for m in out.matches)
    # The budget, not the cap or the target, ended some top-ups.
    assert any(m.confidence < 0.95 and len(m.votes) < 9 for m in out.matches)


@settings(deadline=None, max_examples=150)
@given(n=st.integers(2, 12), seed=st.integers(0, 2**31), votes=st.integers(1, 3), extra=st.integers(0, 6),
       target=st.floats(0.6, 0.97), invalid=st.sampled_from([0.0, 0.2]),
       spare=st.none() | st.integers(0, 12), data=st.data())
def test_adaptive_knockout_tops_up_exactly_the_uncertain_matches(
        n, seed, votes, extra, target, invalid, spare, data):
    judge = Judge([float(i) for i in range(n)], difficulties(data, n), invalid=invalid, seed=seed)
    cap = votes + extra
    budget = None if spare is None else (n - 1) * votes + spare  # the base votes and ``spare`` more
    cmp = JudgeComparator(judge, budget=budget)
    out = run("knockout", cmp, n, votes=votes, seed=seed, adaptive_votes=cap, target_confidence=target)
    assert len(out.matches) == n - 1
    asked = {c.pair: c for c in cmp.extends}
    assert len(asked) == len(cmp.extends)  # each match topped up at most once
    for m in out.matches:
        p = key(m.a, m.b)
        uncertain = cap > votes and judge.confidence(m.a, m.b, votes) < target
        assert (p in asked) == uncertain  # every knockout match decides; only the uncertain get more
        assert votes <= len(m.votes) <= max(votes, cap)
        assert (len(m.votes) > votes) <= uncertain
        assert outcomes(m) == [v.outcome for v in judge.votes(m.a, m.b, len(m.votes))]  # kept, not redrawn
        if p in asked:
            later = sum(o.round > m.round for o in out.matches)
            assert (asked[p].max_votes, asked[p].target, asked[p].reserve) == (cap, target, later * votes)
        if m.tally.winner is None:
            assert m.decided_by == "tiebreak"
        else:
            assert m.winner == (m.a, m.b)[m.tally.winner]
    if budget is not None:
        assert cmp.spent <= budget
    again = implied("knockout", judge, cmp.lengths, n, votes=votes, seed=seed)
    assert (again.best, again.ranking) == (out.best, out.ranking)


def test_adaptive_elo_tops_up_the_leaders_matches_only():
    # 4 and 5 beat everyone else every time; 5 is better than 4, but their first vote says 4. Among
    # 0..3 the judge is a coin: those matches stay uncertain, and decide nothing about the pick.
    n = 6
    judge = Judge([float(i) for i in range(n)], {p: 1.0 for p in combinations(range(4), 2)},
                  scripts={(4, 5): [4, 5, 5, 5, 5, 5, 5]}, seed=7)
    fixed = run("elo", JudgeComparator(judge), n, votes=1, seed=7)
    assert fixed.best == 4 and set(fixed.ranking[:2]) == {4, 5}
    cmp = JudgeComparator(judge)
    out = run("elo", cmp, n, votes=1, seed=7, adaptive_votes=7, target_confidence=0.85)
    assert out.best == 5 and out.ranking[:2] == [5, 4]
    lengths = {key(m.a, m.b): len(m.votes) for m in out.matches}
    assert lengths[(4, 5)] == 5  # 4-1 (0.89) is the first count above 0.85 after the 4 of the first vote
    for (a, b), k in lengths.items():
        if {a, b} & {4, 5} and (a, b) != (4, 5):
            assert k == 2  # 2-0: 0.875
        elif (a, b) != (4, 5):
            assert k == 1 and judge.confidence(a, b, 1) < 0.85  # uncertain, yet never topped up
    assert {c.pair for c in cmp.extends} == {p for p in lengths if set(p) & {4, 5}}
    assert out.ranking == implied("elo", judge, cmp.lengths, n, votes=1, seed=7).ranking


def test_adaptive_elo_stops_asking_once_the_budget_is_spent():
    n = 6
    judge = Judge([float(i) for i in range(n)], {p: 1.0 for p in combinations(range(n), 2)}, seed=1)
    cmp = JudgeComparator(judge, budget=15)  # the 15 base votes: nothing left for top-ups
    out = run("elo", cmp, n, votes=1, seed=1, adaptive_votes=5, target_confidence=0.9)
    top = set(out.ranking[:2])
    assert {c.pair for c in cmp.extends} == {key(m.a, m.b) for m in out.matches if {m.a, m.b} & top}
    assert len(cmp.extends) == 2 * n - 3  # one round of asking, none repeated
    assert all(len(m.votes) == 1 for m in out.matches)
    assert out.ranking == run("elo", JudgeComparator(judge), n, votes=1, seed=1).ranking


@settings(deadline=None, max_examples=150)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**31), votes=st.integers(1, 3), extra=st.integers(0, 6),
       target=st.floats(0.6, 0.97), invalid=st.sampled_from([0.0, 0.2]), data=st.data())
def test_adaptive_elo_settles_the_top_two_and_nothing_else(n, seed, votes, extra, target, invalid, data):
    quality = data.draw(st.permutations([float(i) for i in range(n)]))
    judge = Judge(quality, difficulties(data, n), invalid=invalid, seed=seed)
    opponents = data.draw(st.none() | st.integers(1, n - 1))
    cap = votes + extra
    kw = {"votes": votes, "seed": seed, "opponents": opponents}
    cmp = JudgeComparator(judge)
    out = run("elo", cmp, n, adaptive_votes=cap, target_confidence=target, **kw)
    for c in cmp.extends:
        # Asked only for a match that was uncertain, below the cap, and touching the top two of the
        # ranking the votes drawn by then implied.
        assert c.had < cap and c.confidence < target and c.confidence == judge.confidence(*c.pair, c.had)
        assert (c.max_votes, c.target, c.reserve) == (cap, target, 0)
        assert set(c.pair) & set(implied("elo", judge, c.lengths, n, **kw).ranking[:2])
    asked = {c.pair for c in cmp.extends}
    top = set(out.ranking[:2])
    for m in out.matches:
        k = len(m.votes)
        assert votes <= k <= max(votes, cap)
        assert k == votes or key(m.a, m.b) in asked
        assert outcomes(m) == [v.outcome for v in judge.votes(m.a, m.b, k)]
        if {m.a, m.b} & top:  # the pick's matches are settled: confident, or all their votes drawn
            assert m.confidence >= target or k >= cap
    again = implied("elo", judge, cmp.lengths, n, **kw)
    assert (again.best, again.ranking) == (out.best, out.ranking)


@given(n=st.integers(2, 12), seed=st.integers(0, 1000), method=st.sampled_from(["elo", "knockout", "pairwise"]))
def test_every_match_of_the_result_is_reported_as_it_is_played(n, seed, method):
    """Streaming reports what ``played`` is told: every match of the outcome exactly once (no
    adaptive votes), a knockout's round by round with its round and winner already set."""
    n = 2 if method == "pairwise" else n
    c = OracleComparator(quality=[float(i % 5) for i in range(n)], accuracy=0.7, seed=seed)
    out = run(method, c, n, votes=3, seed=seed)
    assert sorted(map(id, c.reported)) == sorted(map(id, out.matches))
    if method == "knockout":
        assert [m.round for m in c.reported] == sorted(m.round for m in c.reported)
        assert all(m.winner is not None for m in c.reported)
