"""Ratings from pairwise games, through evalica: pure logic, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import evalica
import numpy as np
import pandas as pd

# The RRM paper's online Elo.
ELO_INITIAL = 1000.0
ELO_K = 4.0
ELO_BASE = 10.0
ELO_SCALE = 400.0


@dataclass(frozen=True)
class Game:
    a: int
    b: int
    result: float  # 1.0 a won, 0.0 b won, 0.5 draw


def _winner(result: float) -> evalica.Winner:
    if result == 1.0:
        return evalica.Winner.X
    if result == 0.0:
        return evalica.Winner.Y
    if result == 0.5:
        return evalica.Winner.Draw
    raise ValueError(f"game result must be 1.0, 0.0 or 0.5, got {result}")


def elo_ratings(
    n: int,
    games: Sequence[Game],
    initial: float = ELO_INITIAL,
    k: float = ELO_K,
    base: float = ELO_BASE,
    scale: float = ELO_SCALE,
) -> list[float]:
    """Online Elo over ``games`` in the order given (order matters: callers shuffle with a seed)."""
    if not games:
        return [initial] * n
    result = evalica.elo(
        [g.a for g in games],
        [g.b for g in games],
        [_winner(g.result) for g in games],
        index=pd.Index(range(n)),
        initial=initial,
        k=k,
        base=base,
        scale=scale,
    )
    return [float(result.scores[i]) for i in range(n)]


# Weight of the virtual draw every pair plays in Bradley-Terry: without such a prior a transitive
# set of results (one response beats all) has no finite maximum-likelihood fit.
BT_PRIOR_DRAW_WEIGHT = 0.1


def bradley_terry_ratings(n: int, games: Sequence[Game], prior: float = BT_PRIOR_DRAW_WEIGHT) -> list[float]:
    """Bradley-Terry strengths on the Elo scale (1000 = average), independent of game order."""
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    xs = [g.a for g in games] + [i for i, _ in pairs]
    ys = [g.b for g in games] + [j for _, j in pairs]
    winners = [_winner(g.result) for g in games] + [evalica.Winner.Draw] * len(pairs)
    weights = [1.0] * len(games) + [prior] * len(pairs)
    result = evalica.bradley_terry(xs, ys, winners, index=pd.Index(range(n)), weights=weights)
    strengths = np.array([float(result.scores[i]) for i in range(n)])
    logs = np.log10(strengths)
    return [float(ELO_INITIAL + ELO_SCALE * (x - logs.mean())) for x in logs]
