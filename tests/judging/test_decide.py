"""A match's decision from its votes: plain majority, position debiasing, probabilities."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.votes import Decision, Outcome, Vote, decide, outcome_from_slot
from rrm_server.prompt.verdict import InvalidReason

F, S, I = Outcome.first, Outcome.second, Outcome.invalid


def vote(swapped: bool, outcome: Outcome, p: float | None = None, i: int = 0) -> Vote:
    reason = InvalidReason.no_verdict if outcome is I else None
    return Vote.of(i, swapped, outcome, seed=i, reason=reason, p_first=p)


def judged(slots: list[int], swapped: bool) -> list[Vote]:
    """Votes of a judge that answered ``slots`` ("Assistant 1/2") in one presentation order."""
    return [vote(swapped, outcome_from_slot(s, swapped)) for s in slots]


def test_a_judge_that_always_says_assistant_1():
    """3 fixed + 1 swapped "Assistant 1": plain majority follows the order, debiasing ties."""
    votes = judged([1, 1, 1], swapped=False) + judged([1], swapped=True)
    assert [v.outcome for v in votes] == [F, F, F, S]
    assert decide(votes) == Decision(winner=0, by="majority", position_consistent=False, p_first=None)
    assert decide(votes, debias=True) == Decision(None, "majority", False, None)
    # Balanced orders: both rules tie.
    even = judged([1, 1], False) + judged([1, 1], True)
    assert decide(even).winner is None and decide(even, debias=True).winner is None


def test_a_consistent_judge():
    votes = judged([2, 2, 2], swapped=False) + judged([1], swapped=True)  # b wins shown either way
    for debias in (False, True):
        d = decide(votes, debias=debias)
        assert (d.winner, d.position_consistent) == (1, True)


def test_debiasing_weighs_orders_not_votes():
    # Fixed order: 3 of 4 for the first; swapped order: 0 of 1. Share (0.75 + 0) / 2 < 1/2.
    votes = [vote(False, F), vote(False, F), vote(False, F), vote(False, S), vote(True, S)]
    assert decide(votes).winner == 0
    assert decide(votes, debias=True).winner == 1


def test_probabilities_in_both_orders():
    votes = [vote(False, F, 0.9), vote(False, F, 0.8), vote(True, S, 0.4)]
    d = decide(votes, debias=True)
    assert (d.winner, d.by, d.position_consistent) == (0, "probability", False)
    assert d.p_first == pytest.approx((0.85 + 0.4) / 2)  # 0.625: the mean over orders
    plain = decide(votes)
    assert (plain.winner, plain.by) == (0, "majority")
    assert plain.p_first == pytest.approx(0.7)  # the mean over votes
    # Probabilities decide against the vote count: 2 votes of 0.55 vs 1 of 0.1.
    close = [vote(False, F, 0.55), vote(False, F, 0.55), vote(True, S, 0.1)]
    assert decide(close, debias=True).winner == 1 and decide(close).winner == 0
    # Exactly 1/2: a tie.
    assert decide([vote(False, F, 0.75), vote(True, S, 0.25)], debias=True).winner is None


def test_probabilities_in_one_order_only_fall_back_to_shares():
    votes = [vote(False, F, 0.9), vote(False, F, 0.9), vote(True, S)]
    d = decide(votes, debias=True)
    assert (d.winner, d.by) == (None, "majority")  # shares (1 + 0) / 2
    assert d.p_first == pytest.approx(0.9)


def test_one_order_without_valid_votes_uses_the_plain_rule():
    votes = [vote(False, F), vote(False, F), vote(False, S), vote(True, I), vote(True, I)]
    for debias in (False, True):
        assert decide(votes, debias=debias) == Decision(0, "majority", None, None)
    p = [vote(False, F, 0.8), vote(False, S, 0.4)]
    assert decide(p, debias=True) == Decision(None, "majority", None, pytest.approx(0.6))
    assert decide([], debias=True) == Decision(None, "majority", None, None)
    assert decide([vote(True, I)]) == Decision(None, "majority", None, None)


def test_invalid_votes_are_ignored():
    votes = [vote(False, F, 0.9), vote(True, F, 0.7)]
    noise = [vote(False, I), vote(True, I), vote(True, I)]
    for debias in (False, True):
        assert decide(votes + noise, debias=debias) == decide(votes, debias=debias)
        assert decide(noise + votes, debias=debias) == decide(votes, debias=debias)


# Dyadic probabilities: 1 - p is exact, so relabelling does not move a mean across 1/2 by rounding.
_p = st.none() | st.sampled_from([k / 16 for k in range(17)])
_votes = st.lists(
    st.tuples(st.booleans(), st.sampled_from([F, S, I]), _p).map(
        lambda t: vote(t[0], t[1], None if t[1] is I else t[2])),
    max_size=12,
)


def _unswap(v: Vote) -> Vote:
    """The same verdict about the pair, shown in the other order."""
    return Vote.of(v.index, not v.swapped, v.outcome, seed=v.spec.seed, reason=v.reason, p_first=v.p_first)


def _relabel(v: Vote) -> Vote:
    o = {F: S, S: F, I: I}[v.outcome]
    return Vote.of(v.index, v.swapped, o, seed=v.spec.seed, reason=v.reason,
                   p_first=None if v.p_first is None else 1.0 - v.p_first)


@given(_votes)
def test_presentation_order_does_not_matter_when_debiased(votes):
    """Swapping every vote's order (each order keeps its votes) changes nothing."""
    unswapped = [_unswap(v) for v in votes]
    assert decide(unswapped, debias=True) == decide(votes, debias=True)
    assert decide(unswapped).winner == decide(votes).winner


@given(_votes, st.booleans())
def test_relabelling_the_pair_flips_the_winner(votes, debias):
    d = decide(votes, debias=debias)
    r = decide([_relabel(v) for v in votes], debias=debias)
    assert r.winner == {0: 1, 1: 0, None: None}[d.winner]
    assert (r.by, r.position_consistent) == (d.by, d.position_consistent)
    assert (r.p_first is None) == (d.p_first is None)
    if d.p_first is not None:
        assert r.p_first == pytest.approx(1 - d.p_first)


@given(_votes)
def test_debiased_winner_is_the_side_of_one_half(votes):
    """Against the documented rule, computed exactly (dyadic probabilities are exact fractions)."""
    valid = {o: [v for v in votes if v.swapped is o and v.outcome is not I] for o in (False, True)}
    d = decide(votes, debias=True)
    if not valid[False] or not valid[True]:
        first, second = sum(v.outcome is F for v in votes), sum(v.outcome is S for v in votes)
        assert d.winner == (0 if first > second else 1 if second > first else None)
        assert (d.by, d.position_consistent) == ("majority", None)
        return
    probs = [[Fraction(v.p_first) for v in valid[o] if v.p_first is not None] for o in (False, True)]
    if all(probs):
        x = sum(sum(p) / len(p) for p in probs) / 2
        assert d.by == "probability" and d.p_first == pytest.approx(float(x))
    else:
        x = sum(Fraction(sum(v.outcome is F for v in valid[o]), len(valid[o])) for o in (False, True)) / 2
        assert d.by == "majority"
    assert d.winner == (None if x == Fraction(1, 2) else 0 if x > Fraction(1, 2) else 1)


def test_plain_probability_ignores_invalid_votes():
    votes = [vote(False, F, 0.9)]
    stray = Vote.of(1, False, I, seed=1, reason=InvalidReason.malformed, p_first=0.1)
    assert decide(votes + [stray]).p_first == decide(votes).p_first
