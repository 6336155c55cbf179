"""Sparse tournaments: connected, balanced, no repeats, seeded."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.pairings import is_connected, round_robin_pairs, sparse_pairs


@st.composite
def graphs(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(2, 64))
    return n, draw(st.integers(1, n - 1)), draw(st.integers(0, 2**63 - 1))


def degrees(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    c = Counter(x for p in pairs for x in p)
    return [c[i] for i in range(n)]


@given(graphs())
def test_sparse_graph_properties(g):
    n, m, seed = g
    pairs = sparse_pairs(n, m, seed)
    assert is_connected(n, pairs)
    assert len(set(pairs)) == len(pairs)
    assert all(0 <= a < b < n for a, b in pairs)
    deg = degrees(n, pairs)
    assert min(deg) >= 1
    if m == 1:
        assert len(pairs) == n - 1  # a path
        assert max(deg) <= 2
    else:
        assert max(deg) - min(deg) <= 1
        assert m - 1 <= min(deg) and max(deg) <= m
        assert len(pairs) == n * m // 2
        if m % 2 == 0:
            assert set(deg) == {m}
    assert sparse_pairs(n, m, seed) == pairs  # deterministic for a seed


@given(n=st.integers(2, 40), seed=st.integers(0, 2**31))
def test_full_round_robin_at_n_minus_one(n, seed):
    assert sparse_pairs(n, n - 1, seed) == round_robin_pairs(n)
    assert len(round_robin_pairs(n)) == n * (n - 1) // 2


def test_seeds_change_the_graph():
    graphs_ = {tuple(sparse_pairs(16, 4, seed)) for seed in range(20)}
    assert len(graphs_) >= 15


def test_small_and_invalid():
    assert sparse_pairs(2, 1, 0) == [(0, 1)]
    assert sparse_pairs(1, 1, 0) == [] and sparse_pairs(0, 3, 0) == []
    for n, m in [(2, 0), (2, 2), (5, 0), (5, -1), (5, 5), (5, 6)]:
        with pytest.raises(ValueError):
            sparse_pairs(n, m, 0)


def test_is_connected():
    assert is_connected(1, []) and is_connected(0, [])
    assert is_connected(3, [(0, 1), (1, 2)])
    assert not is_connected(3, [(0, 1)])
    assert not is_connected(4, [(0, 1), (2, 3)])
    assert is_connected(4, round_robin_pairs(4))
