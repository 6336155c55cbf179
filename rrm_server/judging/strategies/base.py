"""Judging strategies behind one interface, found by name in a registry."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from rrm_server.judging.match import Comparator, MatchResult


@dataclass(frozen=True)
class StrategyOptions:
    votes: int = 1
    seed: int = 0
    # ELO only: which rating to fit, and what an all-invalid match counts as.
    # None: online Elo for a full round robin, Bradley-Terry for a sparse one (online Elo over a few
    # games per response barely moves from its start).
    rating: Literal["elo", "bradley_terry"] | None = None
    invalid_matches: Literal["no_result", "draw", "coin"] = "no_result"
    opponents: int | None = None  # ELO: each response meets this many others (None: all of them)
    # Difficulty-aware allocation: matches that decide the outcome and are still uncertain
    # (confidence below the target) get more votes, up to ``adaptive_votes`` in all.
    adaptive_votes: int | None = None
    target_confidence: float = 0.9

    def needs_more(self, match: MatchResult) -> bool:
        return (self.adaptive_votes is not None and len(match.votes) < self.adaptive_votes
                and match.confidence < self.target_confidence)


@dataclass(frozen=True)
class Score:
    """One response's result in a ranking; each strategy's score adds its own fields."""

    index: int


@dataclass(frozen=True)
class PairwiseScore(Score):
    wins: int


@dataclass(frozen=True)
class EloScore(Score):
    rating: float


@dataclass(frozen=True)
class KnockoutScore(Score):
    round_reached: int
    wins: int
    byes: int
    champion: bool
    rounds: int


@dataclass(frozen=True)
class UnrankedScore(Score):
    """A degenerate answer: it lost without a judgment and ranks last."""

    status: str


@dataclass
class RankOutcome:
    best: int | None
    ranking: list[int]
    scores: list[Score]  # one per response, in response order
    matches: list[MatchResult] = field(default_factory=list)


class Strategy(abc.ABC):
    name: ClassVar[str]

    @abc.abstractmethod
    async def run(self, n: int, comparator: Comparator, options: StrategyOptions) -> RankOutcome: ...


_REGISTRY: dict[str, Strategy] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    _REGISTRY[cls.name] = cls()
    return cls


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown judging strategy {name!r}; known: {sorted(_REGISTRY)}") from None


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)
