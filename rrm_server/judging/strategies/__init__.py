"""Judging strategies: importing this package registers pairwise, elo and knockout."""

from rrm_server.judging.strategies import elo, knockout, pairwise  # noqa: F401  (registration)
from rrm_server.judging.strategies.base import (
    EloScore,
    KnockoutScore,
    PairwiseScore,
    RankOutcome,
    Score,
    Strategy,
    StrategyOptions,
    UnrankedScore,
    get_strategy,
    register,
    strategy_names,
)

__all__ = ["EloScore", "KnockoutScore", "PairwiseScore", "RankOutcome", "Score", "Strategy", "StrategyOptions",
           "UnrankedScore", "get_strategy", "register", "strategy_names"]
