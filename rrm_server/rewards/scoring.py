"""From pairwise verdicts to one scalar per sample. Pure functions.

Reference mode: a sample is judged against a reference answer; its score is its win rate among the
valid votes (both orders available), in [0, 1]; reward = 2 * score - 1, in [-1, 1] (0 = as good as
the reference). No valid vote: neutral score 0.5 / reward 0.0, flagged, never a silent 0.

Group mode: the samples of one prompt are ranked together; each sample's score is its normalised
standing in the group, in [0, 1]: after an ELO round robin, its win rate over every valid vote it
took part in (the paper's K = 4 Elo moves ratings by a few points, too flat for a reward; the
ratings stay in the result); after a knockout, the share of rounds it survived (champion = 1).
The same mapping gives reward = 2 * score - 1. A sample without any valid vote gets 0.5, flagged.

Degenerate samples (empty, or reasoning that never closes: ``prompt/answers.py``) are not judged;
they get ``--empty-response-reward`` (default -1, the bottom of the range), never more than the
lowest reward of a real answer in their group: saying nothing can never beat saying something.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrm_server.judging.strategies.base import KnockoutScore

NEUTRAL_SCORE = 0.5


def reward_from_score(score: float) -> float:
    return 2.0 * score - 1.0


def score_from_reward(reward: float) -> float:
    return (reward + 1.0) / 2.0


def degenerate_reward(configured: float, judged: Sequence[float]) -> float:
    """The reward of a degenerate sample: the configured one, capped by every real answer's reward."""
    return min([configured, *judged])


def win_rate(wins: int, losses: int) -> float | None:
    """Share of valid votes the sample won; None without any."""
    total = wins + losses
    return wins / total if total else None


def round_robin_scores(n: int, matches: Sequence[tuple[int, int, int, int]]) -> list[float | None]:
    """Win rate of each sample over the valid votes of its matches; (a, b, votes for a, votes for b)."""
    wins = [0] * n
    total = [0] * n
    for a, b, fa, fb in matches:
        wins[a] += fa
        wins[b] += fb
        total[a] += fa + fb
        total[b] += fa + fb
    return [w / t if t else None for w, t in zip(wins, total)]


def knockout_group_scores(scores: Sequence[KnockoutScore]) -> list[float]:
    out = []
    for s in scores:
        rounds = max(1, s.rounds)
        out.append(1.0 if s.champion else (s.round_reached - 1) / rounds)
    return out
