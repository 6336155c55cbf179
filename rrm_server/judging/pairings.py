"""Which pairs a rank request plays: every pair, or a sparse, balanced, connected graph. Pure logic.

A full round robin costs N(N-1)/2 comparisons: 496 at N = 32, each up to 8k thinking tokens. A
sparse tournament meets each response against ``m`` others and rates everyone by Bradley-Terry on
that graph: about N*m/2 comparisons. The graph is a circulant on a seeded random ring (each
response meets its ``m // 2`` nearest ring neighbours on each side, plus, for odd ``m``, a
matching across the ring), so degrees differ by at most one, no pair repeats, and the ring itself
keeps it connected: every rating is comparable with every other. (The RRM authors' RL arena draws
``m`` random opponents per response, N*m comparisons with repeats and uneven degrees.)
"""

from __future__ import annotations

import random
from itertools import combinations

from rrm_server.judging.votes import derive_seed


def round_robin_pairs(n: int) -> list[tuple[int, int]]:
    return list(combinations(range(n), 2))


def sparse_pairs(n: int, opponents: int, seed: int) -> list[tuple[int, int]]:
    """Pairs (a < b) of a connected graph on ``n`` responses where each meets ``opponents`` others
    (``opponents`` - 1 or so where n * opponents is odd; at least a ring, or a path for n = 2 and
    ``opponents`` = 1, so the graph is connected)."""
    if n < 2:
        return []
    if not 1 <= opponents < n:
        raise ValueError(f"opponents must be between 1 and n - 1 = {n - 1}, got {opponents}")
    if opponents >= n - 1:
        return round_robin_pairs(n)
    ring = list(range(n))
    random.Random(derive_seed(seed, "sparse-ring", n)).shuffle(ring)
    edges: set[tuple[int, int]] = set()

    def add(i: int, j: int) -> None:
        a, b = ring[i % n], ring[j % n]
        edges.add((min(a, b), max(a, b)))

    if opponents == 1:  # a path: the fewest comparisons that still connect everyone
        for i in range(n - 1):
            add(i, i + 1)
        return sorted(edges)
    for d in range(1, opponents // 2 + 1):  # the ring (d = 1) connects everyone
        for i in range(n):
            add(i, i + d)
    if opponents % 2 == 1 and opponents > 1:
        # The odd opponent: a matching across the ring (distance n // 2, never a ring edge above).
        half = n // 2
        for i in range(half):
            add(i, i + half)
    return sorted(edges)


def is_connected(n: int, pairs: list[tuple[int, int]]) -> bool:
    if n <= 1:
        return True
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in pairs:
        adj[a].add(b)
        adj[b].add(a)
    seen, todo = {0}, [0]
    while todo:
        for j in adj[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == n
