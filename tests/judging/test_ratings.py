"""Elo (the paper's online variant) and Bradley-Terry through evalica."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.ratings import Game, bradley_terry_ratings, elo_ratings


def test_one_game_moves_k_over_two():
    # Equal ratings: expected score 0.5, K=4 -> winner +2, loser -2.
    assert elo_ratings(3, [Game(0, 1, 1.0)]) == pytest.approx([1002.0, 998.0, 1000.0])
    assert elo_ratings(2, [Game(0, 1, 0.5)]) == pytest.approx([1000.0, 1000.0])
    assert elo_ratings(2, []) == [1000.0, 1000.0]


def test_online_update_matches_the_formula():
    games = [Game(0, 1, 1.0), Game(1, 2, 0.0), Game(0, 2, 0.5)]
    r = [1000.0] * 3
    for g in games:
        ea = 1 / (1 + 10 ** ((r[g.b] - r[g.a]) / 400))
        delta = 4 * (g.result - ea)
        r[g.a] += delta
        r[g.b] -= delta
    assert elo_ratings(3, games) == pytest.approx(r)


games_st = st.integers(2, 8).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from([0.0, 0.5, 1.0]))
            .filter(lambda t: t[0] != t[1]).map(lambda t: Game(*t)),
            max_size=30,
        ),
    )
)


@given(games_st)
def test_elo_is_zero_sum(ng):
    n, games = ng
    assert sum(elo_ratings(n, games)) == pytest.approx(1000.0 * n)


@given(games_st, st.randoms())
def test_bradley_terry_ignores_game_order(ng, rnd):
    n, games = ng
    shuffled = games[:]
    rnd.shuffle(shuffled)
    assert bradley_terry_ratings(n, shuffled) == pytest.approx(bradley_terry_ratings(n, games), abs=1e-3)


@given(st.integers(2, 10), st.randoms())
def test_a_response_that_wins_everything_ranks_first(n, rnd):
    games = [Game(a, b, 1.0 if a < b else 0.0) for a in range(n) for b in range(a + 1, n)]
    rnd.shuffle(games)
    for ratings in (elo_ratings(n, games), bradley_terry_ratings(n, games)):
        assert max(range(n), key=lambda i: ratings[i]) == 0
        assert all(math.isfinite(x) for x in ratings)


def test_bradley_terry_is_finite_on_transitive_results():
    r = bradley_terry_ratings(3, [Game(0, 1, 1.0), Game(1, 2, 1.0), Game(0, 2, 1.0)])
    assert r[0] > r[1] > r[2]
    assert sum(r) / 3 == pytest.approx(1000.0)
