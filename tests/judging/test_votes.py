"""Votes, seeds, presentation orders and majorities."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.votes import Outcome, derive_seed, majority, outcome_from_slot, plan_votes

outcomes = st.lists(st.sampled_from(list(Outcome)), max_size=40)


def test_slot_maps_back_through_the_order():
    assert outcome_from_slot(1, swapped=False) is Outcome.first
    assert outcome_from_slot(2, swapped=False) is Outcome.second
    assert outcome_from_slot(1, swapped=True) is Outcome.second  # b was shown first and won
    assert outcome_from_slot(2, swapped=True) is Outcome.first
    assert outcome_from_slot(None, swapped=True) is Outcome.invalid


@given(outcomes)
def test_majority_counts_only_valid_votes(xs):
    first, second = xs.count(Outcome.first), xs.count(Outcome.second)
    expected = 0 if first > second else 1 if second > first else None
    assert majority(xs) == expected


@given(outcomes, st.lists(st.just(Outcome.invalid), max_size=10))
def test_invalid_votes_never_decide(xs, invalid):
    assert majority(xs + invalid) == majority(xs)


def test_majority_examples():
    F, S, I = Outcome.first, Outcome.second, Outcome.invalid
    assert majority([F, F, S]) == 0
    assert majority([S, I, I]) == 1
    assert majority([F, S]) is None
    assert majority([I, I]) is None
    assert majority([]) is None


@given(k=st.integers(1, 40), seed=st.integers(0, 2**63 - 1), a=st.integers(0, 50), b=st.integers(0, 50))
def test_both_orders_is_balanced_and_seeds_distinct(k, seed, a, b):
    specs = plan_votes(k, "both", seed, a, b)
    swapped = sum(s.swapped for s in specs)
    assert abs(swapped - (k - swapped)) <= 1
    assert len({s.seed for s in specs}) == k  # 31-bit collisions are possible in theory, not at k<=40 here
    assert all(0 <= s.seed < 2**31 for s in specs)


@given(k=st.integers(1, 20), extra=st.integers(1, 20), seed=st.integers(0, 2**31),
       order=st.sampled_from(["random", "fixed", "both"]))
def test_more_votes_extend_never_reshuffle(k, extra, seed, order):
    small = plan_votes(k, order, seed, 0, 1)
    big = plan_votes(k + extra, order, seed, 0, 1)
    assert big[:k] == small
    assert plan_votes(extra, order, seed, 0, 1, start=k) == big[k:]


def test_fixed_never_swaps_and_random_does_both():
    assert not any(s.swapped for s in plan_votes(16, "fixed", 7, 0, 1))
    rnd = plan_votes(64, "random", 7, 0, 1)
    assert 10 < sum(s.swapped for s in rnd) < 54


def test_seeds_depend_on_request_seed_and_pair():
    assert derive_seed(1, "vote", 0, 1, 0) == derive_seed(1, "vote", 0, 1, 0)
    assert derive_seed(1, "vote", 0, 1, 0) != derive_seed(2, "vote", 0, 1, 0)
    assert derive_seed(1, "vote", 0, 1, 0) != derive_seed(1, "vote", 0, 2, 0)
