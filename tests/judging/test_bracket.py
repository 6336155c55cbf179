"""Knockout brackets and byes for any n."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rrm_server.judging.bracket import first_round, next_round, num_rounds


@given(n=st.integers(2, 300), seed=st.integers(0, 2**31))
def test_first_round_places_everyone_once_with_the_right_byes(n, seed):
    slots = first_round(n, seed)
    size = 1 << num_rounds(n)
    players = [p for a, b in slots for p in (a, b) if p is not None]
    assert sorted(players) == list(range(n))
    assert len(slots) == size // 2
    byes = sum(b is None for _, b in slots)
    assert byes == size - n
    # Byes are spread: two neighbouring bye slots (who meet in round two) only when unavoidable.
    bye_pairs = sum(slots[i][1] is None and slots[i + 1][1] is None for i in range(0, len(slots), 2))
    assert bye_pairs == max(0, byes - len(slots) // 2)


@given(n=st.integers(2, 200), seed=st.integers(0, 2**31))
def test_bracket_plays_n_minus_one_matches_in_log_rounds(n, seed):
    slots = first_round(n, seed)
    matches = rounds = 0
    while True:
        rounds += 1
        matches += sum(b is not None for _, b in slots)
        winners = [min(a, b) if b is not None else a for a, b in slots]
        if len(winners) == 1:
            break
        slots = next_round(winners)
    assert matches == n - 1
    assert rounds == num_rounds(n)


def test_seeded_and_varied():
    assert first_round(8, 1) == first_round(8, 1)
    assert len({tuple(first_round(8, s)) for s in range(20)}) > 1


def test_small_cases():
    assert num_rounds(2) == 1 and num_rounds(3) == 2 and num_rounds(8) == 3 and num_rounds(9) == 4
    with pytest.raises(ValueError):
        first_round(1, 0)
    with pytest.raises(ValueError):
        next_round([0, 1, 2])
