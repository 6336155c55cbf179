"""Knockout brackets for any n >= 2: pure logic, no I/O.

The field is padded to the next power of two P with P - n byes. Byes are spread evenly over the
first round's slots so two byes never meet; from round two on the bracket is a power of two and
winners of neighbouring slots meet, as in the official RRM knockout.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

Slot = tuple[int, int | None]  # (player, opponent) with None = bye


def num_rounds(n: int) -> int:
    return max(0, (n - 1).bit_length())


def first_round(n: int, seed: int) -> list[Slot]:
    """Seeded random first round for players 0..n-1."""
    if n < 2:
        raise ValueError("a knockout needs at least 2 players")
    players = list(range(n))
    random.Random(seed).shuffle(players)
    size = 1 << num_rounds(n)
    slots_count = size // 2
    byes = size - n
    # Evenly spaced bye slots: slot i gets a bye iff floor((i+1)*byes/slots) > floor(i*byes/slots).
    bye_slots = {i for i in range(slots_count) if ((i + 1) * byes) // slots_count > (i * byes) // slots_count}
    it = iter(players)
    slots: list[Slot] = []
    for i in range(slots_count):
        if i in bye_slots:
            slots.append((next(it), None))
        else:
            slots.append((next(it), next(it)))
    return slots


def next_round(winners: Sequence[int]) -> list[Slot]:
    """Neighbouring winners meet; ``winners`` is in bracket order and has even length."""
    if len(winners) % 2:
        raise ValueError("a round after the first must have an even number of players")
    return [(winners[i], winners[i + 1]) for i in range(0, len(winners), 2)]
