"""How many votes a match gets: early stopping and confidence. Pure logic, no I/O.

Votes are drawn in waves. A match stops as soon as its majority can no longer change (the leader
has more valid votes than the other side could still reach), which gives exactly the winner that
drawing every vote would have given, with the same seeds. Optionally it also stops once the
majority is confident enough (``min_votes``, ``confidence``): that saves more and may differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def majority_confidence(leader: int, trailer: int) -> float:
    """P(the judge prefers the leader | votes) under a uniform prior on the judge's preference.

    P(p > 1/2) for p ~ Beta(leader + 1, trailer + 1), exactly: P(Binomial(n, 1/2) <= leader) with
    n = leader + trailer + 1. 3-0 gives 0.9375, 2-1 0.6875, 5-0 0.984; a tie gives 0.5.
    """
    if leader < trailer:
        leader, trailer = trailer, leader
    n = leader + trailer + 1
    return sum(math.comb(n, j) for j in range(leader + 1)) / 2**n


@dataclass(frozen=True)
class VotePolicy:
    max_votes: int
    early_stop: bool = True
    min_votes: int | None = None  # confidence stopping needs both this and ``confidence``
    confidence: float | None = None

    def decided(self, first: int, second: int, used: int) -> bool:
        """No vote left to draw could change the majority."""
        remaining = self.max_votes - used
        return remaining <= 0 or abs(first - second) > remaining

    def confident(self, first: int, second: int) -> bool:
        if self.min_votes is None or self.confidence is None:
            return False
        return first + second >= self.min_votes and majority_confidence(first, second) >= self.confidence

    def next_wave(self, first: int, second: int, used: int) -> int:
        """Votes to draw next (0: stop). The smallest wave after which the match could be decided."""
        remaining = self.max_votes - used
        if remaining <= 0:
            return 0
        if not self.early_stop:
            return remaining
        if self.decided(first, second, used) or self.confident(first, second):
            return 0
        lead, trail = max(first, second), min(first, second)
        wave = (trail + remaining - lead) // 2 + 1
        if self.min_votes is not None and self.confidence is not None:
            wave = min(wave, max(1, self.min_votes - (first + second)))
        return min(remaining, wave)
